"""How a lossy source was encoded, read from its header: compress never re-encodes above it.

A JPEG's quality is estimated from its luminance quantisation table against the IJG reference
table (libjpeg scales that table by 5000/Q below Q 50 and by 200-2Q above). A WebP is lossless
when its first chunk (or the one after VP8X) is VP8L.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, JpegImagePlugin

_WEBP_HEAD_BYTES = 1024 * 1024
# The IJG (Annex K) luminance table, in the natural order Pillow reports tables in.
_IJG_LUMINANCE = (
    *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55),
    *(14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62),
    *(18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
    *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
)


def jpeg_quality(path: Path) -> int | None:
    """The IJG quality (1-100) the JPEG's tables correspond to; None when unknown."""
    try:
        with Image.open(path, formats=["JPEG"]) as image:
            assert isinstance(image, JpegImagePlugin.JpegImageFile)
            tables = image.quantization
    except (OSError, SyntaxError, ValueError, AssertionError):
        return None
    table = (tables or {}).get(0)
    if table is None or len(table) != len(_IJG_LUMINANCE):
        return None
    scale = sum(q * 100 / ref for q, ref in zip(table, _IJG_LUMINANCE, strict=True)) / 64
    if scale <= 0:
        return 100
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return max(1, min(100, round(quality)))


def webp_is_lossless(path: Path) -> bool:
    """True when the image data is VP8L: the chunks are walked until the first VP8 or VP8L
    (an extended file may put ICC, EXIF or alpha chunks first)."""
    with path.open("rb") as stream:
        head = stream.read(_WEBP_HEAD_BYTES)
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    pos = 12
    while pos + 8 <= len(head):
        tag = head[pos : pos + 4]
        if tag in (b"VP8 ", b"VP8L", b"ANMF"):
            return tag == b"VP8L"
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
    return False
