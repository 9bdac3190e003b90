"""RAR output: only through an operator-configured `rar` binary (the encoder is proprietary).

Entries are laid out in a scratch tree (regular files and directories only, names already
normalised) and the binary archives that tree when the sink closes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mesh.errors import MeshError, Reason

NO_ENCODER = (
    "RAR creation needs the proprietary rar encoder, which this deployment does not have; "
    "choose zip, 7z or tgz instead."
)


def rar_level(compression: int) -> int:
    """rar -m1 (fastest) .. -m5 (best); -m0 (store) is never chosen."""
    return 1 + (min(max(compression, 1), 100) - 1) * 4 // 99


class RarSink:
    def __init__(self, output: Path, compression: int, scratch: Path, binary: str | None) -> None:
        if not binary:
            raise MeshError(Reason.UNSUPPORTED_PAIR, NO_ENCODER)
        self._binary = binary
        self._output = output.resolve()
        self._level = rar_level(compression)
        self._tree = Path(tempfile.mkdtemp(dir=scratch, prefix="rar-"))

    def _place(self, name: str) -> Path:
        target = self._tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None:
        self._place(name).mkdir(exist_ok=True)

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None:
        target = self._place(name)
        with target.open("xb") as out:
            for chunk in data:
                out.write(chunk)
        if mtime is not None and mtime >= 0:
            os.utime(target, (mtime, mtime))

    def close(self) -> None:
        try:
            result = subprocess.run(
                [self._binary, "a", "-r", "-idq", f"-m{self._level}", "--", str(self._output), "*"],
                cwd=self._tree,
                capture_output=True,
                check=False,
            )
            if result.returncode != 0:
                raise MeshError(Reason.INTERNAL, "The rar encoder failed.")
        finally:
            shutil.rmtree(self._tree, ignore_errors=True)
