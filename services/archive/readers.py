"""Readers: every archive kind as an iterator of Members whose data is a lazy chunk stream.

zip goes through zipfile (stored, deflate, bzip2, lzma; other methods through libarchive),
the tar family through tarfile's streaming mode, bare gz/bz2/xz as a one-member archive,
7z and rar through libarchive. Iteration is strictly sequential and nothing is read whole.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Literal

from mesh.errors import MeshError, Reason
from services.archive.detect import TAR_FAMILY
from services.archive.failures import translated
from services.archive.libarchive_reader import libarchive_members
from services.archive.limits import Budget
from services.archive.members import Kind, Member
from services.archive.zipcheck import preflight

CHUNK = 64 * 1024
_ZIPFILE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_UNICODE_PATH_EXTRA = 0x7075
_UTF8_FLAG = 0x800
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_TAR_STREAM_MODES: dict[str, Literal["r|", "r|gz", "r|bz2", "r|xz"]] = {
    "": "r|",
    "gz": "r|gz",
    "bz2": "r|bz2",
    "xz": "r|xz",
}


def _stream_chunks(stream: IO[bytes] | io.BufferedIOBase) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _zip_kind(info: zipfile.ZipInfo) -> Kind:
    """Only links and directories mean something in a zip: Info-ZIP records a piped stdin as
    a fifo mode yet stores its data, so every other entry is a regular file."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    if info.filename.endswith("/") or stat.S_ISDIR(mode):
        return Kind.DIR
    return Kind.FILE


def _unicode_path(extra: bytes, raw_name: bytes | None) -> str | None:
    """Info-ZIP's Unicode Path extra field (0x7075): the UTF-8 name, used only while the CRC
    it carries matches the header's own name (a tool unaware of it may have renamed it);
    `raw_name` None skips that check."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        body = extra[pos + 4 : pos + 4 + length]
        if tag == _UNICODE_PATH_EXTRA and len(body) > 5 and body[0] == 1:
            crc = int.from_bytes(body[1:5], "little")
            if raw_name is not None and crc != zlib.crc32(raw_name):
                return None
            return body[5:].decode("utf-8", "replace")
        pos += 4 + length
    return None


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    encoding = "utf-8" if info.flag_bits & _UTF8_FLAG else "cp437"
    return info.orig_filename.encode(encoding, "replace")


def _agree_with_local_header(stream: IO[bytes], info: zipfile.ZipInfo) -> None:
    """Lets zipfile open an entry whose local header spells its name differently from the
    central directory when both carry the same Unicode Path (Windows tools write an ASCII
    stand-in in one and the code-page name in the other; bsdtar, 7z and unzip read them).
    zipfile insists on equal names, so it is told the local header's. The local field's CRC
    is not checked: such tools compute it over the central directory's name."""
    unicode_path = _unicode_path(info.extra, _raw_name(info))
    if unicode_path is None:
        return
    stream.seek(info.header_offset)
    header = stream.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size:
        return
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_SIGNATURE:
        return
    name_length, extra_length = fields[-2], fields[-1]
    raw = stream.read(name_length)
    extra = stream.read(extra_length)
    local_name = raw.decode("utf-8" if fields[2] & _UTF8_FLAG else "cp437", "replace")
    if local_name != info.orig_filename and _unicode_path(extra, None) == unicode_path:
        info.orig_filename = local_name


def _zip_name(info: zipfile.ZipInfo) -> str:
    unicode_path = _unicode_path(info.extra, _raw_name(info))
    if unicode_path:
        return unicode_path
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    # Unflagged names are cp437 by the spec but UTF-8 in practice (most modern tools).
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    try:
        return datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError):
        return None


def _zip_members(path: Path, budget: Budget) -> Iterator[Member]:
    preflight(path, budget)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if any(info.flag_bits & 0x1 for info in infos):
            raise MeshError(
                Reason.PASSWORD_REQUIRED,
                "The archive is encrypted; password-protected archives are not supported.",
            )
        if any(info.compress_type not in _ZIPFILE_METHODS for info in infos):
            yield from libarchive_members(path)
            return
        with path.open("rb") as headers:
            for info in infos:
                _agree_with_local_header(headers, info)
        for info in infos:
            mode = info.external_attr >> 16
            yield Member(
                name=_zip_name(info),
                kind=_zip_kind(info),
                size=info.file_size,
                mtime=_zip_mtime(info),
                mode=(mode & 0o777) or None,
                chunks=partial(_zip_chunks, archive, info),
            )


def _tar_kind(info: tarfile.TarInfo) -> Kind:
    if info.issym():
        return Kind.SYMLINK
    if info.islnk():
        return Kind.HARDLINK
    if info.isdir():
        return Kind.DIR
    if info.isreg():
        return Kind.FILE
    return Kind.OTHER


def _tar_stream(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    stream = archive.extractfile(info)
    if stream is not None:
        yield from _stream_chunks(stream)


def _tar_chunks(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Iterator[bytes]:
    return translated(_tar_stream(archive, info))


def _zip_stream(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    yield from _stream_chunks(archive.open(info))


def _zip_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    return translated(_zip_stream(archive, info))


def _tar_members(path: Path, compression: str) -> Iterator[Member]:
    with (
        path.open("rb") as raw,
        tarfile.open(fileobj=raw, mode=_TAR_STREAM_MODES[compression]) as archive,
    ):
        while (info := archive.next()) is not None:
            # tarfile keeps every header it has seen; streaming must not.
            archive.members.clear()  # type: ignore[attr-defined]
            yield Member(
                name=info.name,
                kind=_tar_kind(info),
                size=info.size,
                mtime=float(info.mtime),
                mode=info.mode & 0o777,
                chunks=partial(_tar_chunks, archive, info),
            )


def gzip_header(path: Path) -> tuple[str | None, int]:
    """(FNAME, MTIME) from a gzip header; the name is None when absent or empty."""
    with path.open("rb") as stream:
        head = stream.read(64 * 1024)
    if len(head) < 10 or not head.startswith(b"\x1f\x8b"):
        return None, 0
    flags = head[3]
    mtime = int.from_bytes(head[4:8], "little")
    pos = 10
    if flags & 0x04:
        pos += 2 + int.from_bytes(head[10:12], "little")
    if not flags & 0x08:
        return None, mtime
    end = head.find(b"\x00", pos)
    raw = head[pos:end] if end >= 0 else b""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("latin-1")
    return name or None, mtime


def _open_single(path: Path, kind: str) -> io.BufferedIOBase:
    if kind == "gz":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    return lzma.open(path, "rb")


def _single_stream(path: Path, kind: str) -> Iterator[bytes]:
    yield from _stream_chunks(_open_single(path, kind))


def _single_chunks(path: Path, kind: str) -> Iterator[bytes]:
    return translated(_single_stream(path, kind))


def _single_members(path: Path, kind: str, name: str) -> Iterator[Member]:
    mtime: float | None = None
    if kind == "gz":
        header_name, header_mtime = gzip_header(path)
        name = header_name or name
        mtime = float(header_mtime) or None
    yield Member(
        name=name,
        kind=Kind.FILE,
        mtime=mtime,
        chunks=partial(_single_chunks, path, kind),
    )


def members(path: Path, kind: str, budget: Budget, single_name: str) -> Iterator[Member]:
    """The members of an archive of `kind` (see detect.ARCHIVE_KINDS). `single_name` names the
    one member of a bare gz/bz2/xz stream without a stored name."""
    if kind == "zip":
        source = _zip_members(path, budget)
    elif kind in TAR_FAMILY:
        source = _tar_members(path, TAR_FAMILY[kind])
    elif kind in ("gz", "bz2", "xz"):
        source = _single_members(path, kind, single_name)
    elif kind in ("7z", "rar"):
        source = libarchive_members(path)
    else:
        raise MeshError(Reason.UNSUPPORTED_FORMAT, f"Unknown archive kind {kind!r}.")
    return translated(source)
