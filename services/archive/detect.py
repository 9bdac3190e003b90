"""Archive detection by content, finer than mesh.formats.sniff.

`sniff` names every gzip stream `gz`. Here compressed streams are peeked into (at most 512
decompressed bytes) to tell `tgz` from a gzipped single file.
"""

from __future__ import annotations

import bz2
import lzma
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from mesh.errors import MeshError, Reason
from mesh.formats import TAR_BLOCK, is_tar_header

# Enough compressed input to decode one tar header from any sane compressor setting.
_PEEK_INPUT = 256 * 1024

# The compressed tar family: kind -> (single-stream kind, tarfile mode suffix).
TAR_FAMILY = {"tar": "", "tgz": "gz", "tbz2": "bz2", "txz": "xz"}
SINGLE_STREAMS = ("gz", "bz2", "xz")
ARCHIVE_KINDS = ("zip", "7z", "rar", *TAR_FAMILY, *SINGLE_STREAMS)


def _peek(path: Path, feed: Callable[[bytes], bytes]) -> bytes:
    out = b""
    with path.open("rb") as stream:
        consumed = 0
        while len(out) < TAR_BLOCK and consumed < _PEEK_INPUT:
            chunk = stream.read(16 * 1024)
            if not chunk:
                break
            consumed += len(chunk)
            try:
                out += feed(chunk)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
                break
    return out[:TAR_BLOCK]


def _gzip_feed() -> Callable[[bytes], bytes]:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return lambda chunk: decoder.decompress(chunk, TAR_BLOCK)


def _bz2_feed() -> Callable[[bytes], bytes]:
    decoder = bz2.BZ2Decompressor()
    return lambda chunk: decoder.decompress(chunk, TAR_BLOCK)


def _xz_feed() -> Callable[[bytes], bytes]:
    decoder = lzma.LZMADecompressor()
    return lambda chunk: decoder.decompress(chunk, TAR_BLOCK)


_COMPRESSED: tuple[tuple[bytes, str, str, Callable[[], Callable[[bytes], bytes]]], ...] = (
    (b"\x1f\x8b", "gz", "tgz", _gzip_feed),
    (b"BZh", "bz2", "tbz2", _bz2_feed),
    (b"\xfd7zXZ\x00", "xz", "txz", _xz_feed),
)


def detect(path: Path, hint: str = "") -> str | None:
    """The archive kind of a file (one of ARCHIVE_KINDS), or None for a non-archive.

    `hint` is the sniffed format; a zip found only by its end record (junk before it) is
    accepted when the sniffer had no better idea, so a JPEG with a zip appended stays a JPEG.
    """
    with path.open("rb") as stream:
        head = stream.read(TAR_BLOCK)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    for magic, single, tarred, feed in _COMPRESSED:
        if head.startswith(magic):
            return tarred if is_tar_header(_peek(path, feed())) else single
    if is_tar_header(head):
        return "tar"
    if hint in ("", "zip") and zipfile.is_zipfile(path):
        return "zip"
    return None


def require_archive(path: Path, hint: str) -> str:
    kind = detect(path, hint)
    if kind is None:
        raise MeshError(
            Reason.UNSUPPORTED_FORMAT,
            "The file is not an archive this service can read "
            "(zip, tar, tgz, tar.bz2, tar.xz, 7z, rar, gz, bz2, xz).",
        )
    return kind
