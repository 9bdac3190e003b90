"""Members of rar, 7z and exotic zip archives (deflate64, xz, zstd methods) via libarchive.

libarchive pulls entries one by one and their data block by block, so nothing is held whole.
The extraction API of libarchive is never used: it would create links and devices.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from mesh.errors import MeshError, Reason
from services.archive.failures import translated
from services.archive.members import Kind, Member

CHUNK = 64 * 1024


def _library() -> Any:
    try:
        import libarchive  # noqa: PLC0415 - the shared library may be missing; fail typed
        from libarchive import ffi  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise MeshError(
            Reason.UNAVAILABLE,
            "Reading this archive needs the system libarchive library; "
            "the operator must install libarchive13.",
        ) from exc
    is_encrypted = ffi.libarchive.archive_entry_is_encrypted
    is_encrypted.argtypes = [ctypes.c_void_p]
    is_encrypted.restype = ctypes.c_int
    return libarchive


def _kind(entry: Any) -> Kind:
    if entry.issym:
        return Kind.SYMLINK
    if entry.islnk:
        return Kind.HARDLINK
    if entry.isdir:
        return Kind.DIR
    if entry.isreg:
        return Kind.FILE
    return Kind.OTHER


def _encrypted(entry: Any) -> bool:
    from libarchive import ffi  # noqa: PLC0415 - loaded by _library already

    return bool(ffi.libarchive.archive_entry_is_encrypted(entry._entry_p))


def _blocks(entry: Any) -> Iterator[bytes]:
    return translated(iter(entry.get_blocks(CHUNK)))


def _members(path: Path) -> Iterator[Member]:
    libarchive = _library()
    with libarchive.file_reader(str(path)) as archive:
        for entry in archive:
            if _encrypted(entry):
                raise MeshError(
                    Reason.PASSWORD_REQUIRED,
                    "The archive is encrypted; password-protected archives are not supported.",
                )
            size = entry.size
            yield Member(
                name=entry.pathname or "",
                kind=_kind(entry),
                size=int(size) if size is not None else None,
                mtime=float(entry.mtime) if entry.mtime is not None else None,
                mode=int(entry.mode) & 0o777,
                chunks=partial(_blocks, entry),
            )


def libarchive_members(path: Path) -> Iterator[Member]:
    return translated(_members(path))
