"""strip-metadata on an image: EXIF (GPS, camera, dates), XMP, IPTC and comments removed; the
ICC profile kept, so colours do not change.

JPEG, PNG and WebP are rewritten segment by segment, streaming, with the picture data copied
byte for byte (no second lossy encode): JPEG keeps JFIF, ICC, Adobe and the coded image and
drops every other APPn and COM segment and anything after the end marker (MPF previews carry
their own EXIF); PNG drops its text, time and eXIf chunks; WebP its EXIF and XMP chunks. An
EXIF orientation other than 1 is kept as a one-tag EXIF, since the pixels are stored turned.
Other formats are decoded and written again in their own format (TIFF: its first page; BMP and
ICO become PNG) with the orientation applied.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import pyvips

from mesh.errors import MeshError
from mesh.options import DEFAULT_COMPRESSION, Box, Fit
from mesh.outcome import Outcome
from mesh.tools.params import StripMetadataParams
from services.image import encode
from services.image.limits import ImageLimits
from services.image.resize import plan
from services.image.sources import corrupt
from services.image.tools.boxes import load, opened, save

_BLOCK = 64 * 1024
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_KEEP = {0xE0: (b"JFIF\x00",), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})
_WEBP_DROP = frozenset({b"EXIF", b"XMP "})
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def orientation_exif(value: int) -> bytes:
    """A TIFF-structured EXIF block holding only the orientation tag."""
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
    return b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


class _Reader:
    """A file read with one step of push-back, for scanning JPEG entropy-coded data."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.pending = b""

    def read(self, size: int) -> bytes:
        if self.pending:
            data, self.pending = self.pending[:size], self.pending[size:]
            return data + (self.file.read(size - len(data)) if len(data) < size else b"")
        return self.file.read(size)

    def exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise corrupt()
        return data


def _copy_scan(source: _Reader, out: BinaryIO) -> bool:
    """Copies entropy-coded data up to the next marker; False when the file ends first."""
    carry = b""
    while True:
        block = carry + source.read(_BLOCK)
        carry = b""
        if not block:
            return False
        start = 0
        while True:
            at = block.find(b"\xff", start)
            if at < 0:
                out.write(block)
                break
            if at == len(block) - 1:
                out.write(block[:at])
                carry = block[at:]
                break
            following = block[at + 1]
            if following == 0 or 0xD0 <= following <= 0xD7:
                start = at + 2
                continue
            out.write(block[:at])
            source.pending = block[at:] + source.pending
            return True


def strip_jpeg(source: BinaryIO, out: BinaryIO, orientation: int) -> None:
    reader = _Reader(source)
    if reader.exact(2) != b"\xff\xd8":
        raise corrupt()
    out.write(b"\xff\xd8")
    exif_due = orientation != 1
    while True:
        if reader.exact(1) != b"\xff":
            raise corrupt()
        marker = reader.exact(1)[0]
        while marker == 0xFF:  # fill bytes before a marker
            marker = reader.exact(1)[0]
        if marker == _EOI:
            out.write(b"\xff\xd9")
            return  # whatever follows (MPF previews, trailers) is left out
        if marker in _STANDALONE:
            out.write(bytes((0xFF, marker)))
            continue
        length = struct.unpack(">H", reader.exact(2))[0]
        payload = reader.exact(length - 2) if length >= 2 else b""
        if exif_due and marker != 0xE0:
            exif = b"Exif\x00\x00" + orientation_exif(orientation)
            out.write(b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif)
            exif_due = False
        prefixes = _JPEG_KEEP.get(marker)
        is_app = 0xE0 <= marker <= 0xEF or marker == 0xFE
        if not is_app or (prefixes and payload.startswith(prefixes)):
            out.write(bytes((0xFF, marker)) + struct.pack(">H", length) + payload)
        if marker == _SOS and not _copy_scan(reader, out):
            out.write(b"\xff\xd9")  # a truncated file: end it properly
            return


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def strip_png(source: BinaryIO, out: BinaryIO, orientation: int) -> None:
    if source.read(8) != _PNG_SIGNATURE:
        raise corrupt()
    out.write(_PNG_SIGNATURE)
    exif_due = orientation != 1
    while header := source.read(8):
        if len(header) < 8:
            raise corrupt()
        length, kind = struct.unpack(">I4s", header)
        if exif_due and kind in (b"IDAT", b"acTL", b"fcTL", b"IEND"):
            out.write(_png_chunk(b"eXIf", orientation_exif(orientation)))
            exif_due = False
        if kind in _PNG_DROP:
            source.seek(length + 4, 1)
        else:
            out.write(header)
            _copy_exactly(source, out, length + 4)
        if kind == b"IEND":
            return


def _copy_exactly(source: BinaryIO, out: BinaryIO, size: int) -> None:
    while size > 0:
        block = source.read(min(_BLOCK, size))
        if not block:
            raise corrupt()
        out.write(block)
        size -= len(block)


def strip_webp(source: BinaryIO, out: BinaryIO, orientation: int) -> None:
    head = source.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WEBP":
        raise corrupt()
    chunks: list[tuple[bytes, int, int]] = []  # kind, payload offset, payload size
    while header := source.read(8):
        if len(header) < 8:
            raise corrupt()
        kind, size = struct.unpack("<4sI", header)
        chunks.append((kind, source.tell(), size))
        source.seek(size + (size & 1), 1)
    exif = orientation_exif(orientation) if orientation != 1 else b""
    kept = [chunk for chunk in chunks if chunk[0] not in _WEBP_DROP]
    extended = bool(kept) and kept[0][0] == b"VP8X"
    if exif and not extended:
        exif = b""  # a simple WebP cannot carry EXIF; its pixels stay as stored
    body = sum(8 + size + (size & 1) for _, _, size in kept)
    if exif:
        body += 8 + len(exif) + (len(exif) & 1)
    out.write(b"RIFF" + struct.pack("<I", 4 + body) + b"WEBP")
    for kind, offset, size in kept:
        out.write(struct.pack("<4sI", kind, size))
        source.seek(offset)
        if kind == b"VP8X":
            flags = source.read(1)[0] & ~(_VP8X_EXIF | _VP8X_XMP)
            out.write(bytes((flags | (_VP8X_EXIF if exif else 0),)))
            _copy_exactly(source, out, size - 1 + (size & 1))
        else:
            _copy_exactly(source, out, size + (size & 1))
    if exif:
        out.write(b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1))


_REWRITERS = {"jpg": strip_jpeg, "png": strip_png, "webp": strip_webp}


def strip_metadata(
    source: Path,
    output: Path,
    source_format: str,
    params: StripMetadataParams,
    limits: ImageLimits,
) -> Outcome:
    animated = source_format in ("gif", "webp")
    found = opened(source, source_format, limits, animate=animated)
    rewrite = _REWRITERS.get(source_format)
    if rewrite is not None:
        try:
            with source.open("rb") as file, output.open("wb") as out:
                rewrite(file, out, found.orientation)
        except (MeshError, OSError, struct.error) as error:
            output.unlink(missing_ok=True)
            if isinstance(error, MeshError):
                raise
            raise corrupt() from error
        encoder = encode.ENCODERS[source_format]
        width, height = found.oriented_size(True)
        return Outcome(source_format, encoder.mime_type, width, height)
    target = source_format if source_format in encode.ENCODERS else "png"
    try:
        resize = plan(Box(None, None, Fit.NONE), *found.oriented_size(True))
        image = load(found, resize, target, limits, frames=found.frames)
        quality = save(image, output, target, DEFAULT_COMPRESSION)
    except pyvips.Error as error:
        output.unlink(missing_ok=True)
        raise corrupt() from error
    mime = encode.ENCODERS[target].mime_type
    height = image.height // max(1, found.frames)
    return Outcome(target, mime, image.width, height, applied_quality=quality)
