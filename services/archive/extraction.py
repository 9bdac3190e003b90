"""Safe extraction: regular files and directories only, created under one root.

Files are opened with O_EXCL|O_NOFOLLOW and parents are created one component at a time and
checked with lstat, so nothing can be written through a link or outside the root, even if
the root already held something unexpected. Links, devices and fifos are never created.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from mesh.errors import MeshError, Reason

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class PathConflictError(Exception):
    """The entry's path is taken (duplicate name, or a file where a directory must go)."""


def ensure_dir(root: Path, relative: str) -> Path:
    """Creates root/relative one component at a time; every component must be a real dir."""
    current = root
    if not relative:
        return current
    for part in relative.split("/"):
        current = current / part
        try:
            current.mkdir(mode=0o755)
        except FileExistsError:
            if not stat.S_ISDIR(current.lstat().st_mode):
                raise PathConflictError from None
    return current


def write_file(
    root: Path, name: str, data: Iterator[bytes], mtime: float | None
) -> tuple[Path, int]:
    """Writes one entry; returns its path and the bytes written. Removes it on failure."""
    parent, _, base = name.rpartition("/")
    directory = ensure_dir(root, parent)
    target = directory / base
    try:
        fd = os.open(target, _CREATE, 0o644)
    except FileExistsError:
        raise PathConflictError from None
    except OSError as exc:
        raise MeshError(Reason.CORRUPT_INPUT, "An archive entry name cannot be created.") from exc
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in data:
                out.write(chunk)
                written += len(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if mtime is not None and mtime >= 0:
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(target, (mtime, mtime), follow_symlinks=False)
    return target, written
