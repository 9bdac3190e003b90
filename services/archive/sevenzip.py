"""7z output through py7zr (LZMA2, one solid block).

py7zr reads members from paths, so each entry is spooled to scratch first and removed right
after it is compressed; only one entry is on disk at a time. Reading 7z goes through
libarchive (readers.py), which streams entries instead of pushing them into callbacks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import py7zr

from services.archive import levels
from services.archive.writers import spool


def _stamp(path: Path, mtime: float | None, mode: int) -> None:
    path.chmod(mode)
    if mtime is not None and mtime >= 0:
        os.utime(path, (mtime, mtime))


class SevenZipSink:
    def __init__(self, output: Path, compression: int, scratch: Path) -> None:
        self._scratch = scratch
        filters = [{"id": py7zr.FILTER_LZMA2, "preset": levels.lzma_preset(compression)}]
        self._archive = py7zr.SevenZipFile(output, "w", filters=filters)

    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None:
        folder = Path(tempfile.mkdtemp(dir=self._scratch, prefix="dir-"))
        try:
            _stamp(folder, mtime, mode or 0o755)
            self._archive.write(folder, arcname=name)
        finally:
            folder.rmdir()

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None:
        spooled = spool(data, self._scratch)
        try:
            _stamp(spooled, mtime, mode or 0o644)
            self._archive.write(spooled, arcname=name)
        finally:
            spooled.unlink()

    def add_path(self, path: Path, name: str) -> None:
        """A file already on disk (pack_directory): no spooling needed."""
        self._archive.write(path, arcname=name)

    def close(self) -> None:
        self._archive.close()
