"""Formats: the output formats of the contract, their MIME types and families, and sniffing.

Routing is decided by content, never by a file name or a client's declared type: `sniff`
reads the first bytes of a file and names its format and family.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Family(enum.Enum):
    IMAGE = "image"
    SVG = "svg"
    PDF = "pdf"
    VIDEO = "video"
    AUDIO = "audio"
    ARCHIVE = "archive"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OutputFormat:
    name: str
    mime_type: str
    family: Family
    extension: str


def _fmt(name: str, mime: str, family: Family, ext: str | None = None) -> OutputFormat:
    return OutputFormat(name, mime, family, ext or name)


# The 25 output formats of the contract, in the order API.md lists them.
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        _fmt("jpg", "image/jpeg", Family.IMAGE),
        _fmt("png", "image/png", Family.IMAGE),
        _fmt("webp", "image/webp", Family.IMAGE),
        _fmt("avif", "image/avif", Family.IMAGE),
        _fmt("tiff", "image/tiff", Family.IMAGE),
        _fmt("gif", "image/gif", Family.IMAGE),
        _fmt("heif", "image/heif", Family.IMAGE),
        _fmt("svg", "image/svg+xml", Family.SVG),
        _fmt("pdf", "application/pdf", Family.PDF),
        _fmt("mp4", "video/mp4", Family.VIDEO),
        _fmt("webm", "video/webm", Family.VIDEO),
        _fmt("mov", "video/quicktime", Family.VIDEO),
        _fmt("mp3", "audio/mpeg", Family.AUDIO),
        _fmt("wav", "audio/wav", Family.AUDIO),
        _fmt("ogg", "audio/ogg", Family.AUDIO),
        _fmt("m4a", "audio/mp4", Family.AUDIO),
        _fmt("flac", "audio/flac", Family.AUDIO),
        _fmt("zip", "application/zip", Family.ARCHIVE),
        _fmt("tar", "application/x-tar", Family.ARCHIVE),
        _fmt("tgz", "application/gzip", Family.ARCHIVE, "tar.gz"),
        _fmt("7z", "application/x-7z-compressed", Family.ARCHIVE),
        _fmt("rar", "application/vnd.rar", Family.ARCHIVE),
        _fmt("gz", "application/gzip", Family.ARCHIVE),
        _fmt("bz2", "application/x-bzip2", Family.ARCHIVE),
        _fmt("xz", "application/x-xz", Family.ARCHIVE),
    )
}


def outputs_of(*families: Family) -> tuple[str, ...]:
    """The output formats of these families, in the contract's order."""
    return tuple(name for name, fmt in OUTPUT_FORMATS.items() if fmt.family in families)


# Input formats that sniffing recognises, with their family. Names match OUTPUT_FORMATS where
# the format is also an output; `jpg` for JPEG, `heif` for HEIF/HEIC.
INPUT_FAMILIES: dict[str, Family] = {
    **{
        n: Family.IMAGE for n in ("jpg", "png", "webp", "avif", "heif", "gif", "tiff", "bmp", "ico")
    },
    "svg": Family.SVG,
    "pdf": Family.PDF,
    **{n: Family.VIDEO for n in ("mp4", "mov", "webm", "mkv", "avi", "ts", "mpg", "ogv")},
    **{n: Family.AUDIO for n in ("mp3", "m4a", "aac", "wav", "ogg", "opus", "flac")},
    **{n: Family.ARCHIVE for n in ("zip", "tar", "gz", "bz2", "xz", "7z", "rar")},
}

# How many leading bytes `sniff` wants (tar's magic sits at offset 257).
SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Sniffed:
    format: str
    family: Family

    @property
    def known(self) -> bool:
        return self.family is not Family.UNKNOWN


UNKNOWN = Sniffed("", Family.UNKNOWN)

_ISO_BMFF_BRANDS: dict[bytes, str] = {
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heif",
    b"heix": "heif",
    b"hevc": "heif",
    b"heim": "heif",
    b"heis": "heif",
    b"hevm": "heif",
    b"hevs": "heif",
    b"mif1": "heif",
    b"msf1": "heif",
    b"qt  ": "mov",
    b"M4A ": "m4a",
    b"M4B ": "m4a",
    b"F4A ": "m4a",
}
_SVG_ROOT = re.compile(rb"<svg[\s>]", re.IGNORECASE)


def _sniff_iso_bmff(head: bytes) -> str | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    brands = [major]
    end = min(max(box_size, 16), len(head))
    brands.extend(head[i : i + 4] for i in range(16, end - 3, 4))
    # A major brand decides; compatible brands only settle image-vs-video for `mif1` files.
    if major in _ISO_BMFF_BRANDS:
        name = _ISO_BMFF_BRANDS[major]
        if name == "heif" and (b"avif" in brands or b"avis" in brands):
            return "avif"
        return name
    for brand in brands:
        if brand in (b"avif", b"avis"):
            return "avif"
    return "mp4"


def _sniff_riff(head: bytes) -> str | None:
    if head[:4] != b"RIFF" or len(head) < 12:
        return None
    return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])


def _sniff_ogg(head: bytes) -> str:
    if b"\x80theora" in head[:512]:
        return "ogv"
    if b"OpusHead" in head[:512]:
        return "opus"
    return "ogg"


def _sniff_text(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if (text.startswith(b"<") and _SVG_ROOT.search(head)) or text.startswith(b"<svg"):
        return "svg"
    return None


def _sniff_mpeg_audio(head: bytes) -> str | None:
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0:  # MPEG audio frame, layer I-III
            return "mp3"
    return None


TAR_BLOCK = 512


def is_tar_header(block: bytes) -> bool:
    """True for a tar header block with a valid checksum (ustar, GNU and old v7 alike)."""
    if len(block) < TAR_BLOCK or not block[:100].strip(b"\x00"):
        return False
    field = block[148:156].replace(b"\x00", b" ").strip()
    try:
        declared = int(field, 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:TAR_BLOCK]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return declared in (unsigned, signed)


def _sniff_mpeg_ts(head: bytes) -> bool:
    return len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47


# Magic prefixes checked in order; more specific prefixes first.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"%PDF-", "pdf"),
    (b"\x1a\x45\xdf\xa3", "mkv"),
    (b"\x00\x00\x01\xba", "mpg"),
    (b"\x00\x00\x01\xb3", "mpg"),
    (b"fLaC", "flac"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def sniff(head: bytes) -> Sniffed:
    """Names the format of a file from its first bytes (`SNIFF_BYTES` are enough)."""
    name: str | None = None
    for magic, candidate in _MAGIC:
        if head.startswith(magic):
            name = candidate
            break
    if name == "mkv" and b"webm" in head[:64]:
        name = "webm"
    if name == "bmp" and len(head) >= 14:
        declared = int.from_bytes(head[2:6], "little")
        if declared < 14:
            name = None
    name = (
        name
        or _sniff_iso_bmff(head)
        or _sniff_riff(head)
        or (_sniff_ogg(head) if head.startswith(b"OggS") else None)
        or ("ts" if _sniff_mpeg_ts(head) else None)
        or ("tar" if head[257:262] == b"ustar" or is_tar_header(head) else None)
        or _sniff_mpeg_audio(head)
        or _sniff_text(head)
    )
    if name is None:
        return UNKNOWN
    return Sniffed(name, INPUT_FAMILIES[name])
