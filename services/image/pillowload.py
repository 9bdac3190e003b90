"""Sources libvips cannot read, decoded by Pillow: APNG animation (libvips' PNG loader reads
only the default image), AVIF image sequences (the wheel's libheif reads still items only),
HEVC HEIF, BMP, ICO, float and integer TIFF, 8-bit CIELab TIFF, tiled TIFF with separate colour
planes, and TIFF compressions the wheel's libtiff lacks (it reads those as silent black).

Pillow opens lazily: size and frame count come from the headers, so the limits are checked
before any pixel is decoded. Every frame comes out as 8-bit sRGB (or grey), with alpha when the
source has any; float samples outside 0-1 and integer samples above 255 are stretched from
their own range onto 0-255.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyvips
from PIL import Image, ImageOps

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A real PNG puts acTL within its first few chunks; scanning stops well before any pixel data.
_MAX_CHUNKS = 64
_TIFF_PLANAR = 284
_TIFF_TILE_WIDTH = 322
_SEPARATE_PLANES = 2
_TIFF_COMPRESSION = 259
# LZMA, ZSTD, WebP and JPEG 2000 in TIFF: the libvips wheel's libtiff has none of them.
_VIPS_MISSING_COMPRESSIONS = frozenset({34925, 50000, 50001, 33003, 33005, 34712})
_DEFAULT_DELAY_MS = 100


def is_apng(path: Path) -> bool:
    """True when the PNG declares an animation (acTL) before its first image data."""
    with path.open("rb") as stream:
        if stream.read(8) != _PNG_SIGNATURE:
            return False
        for _ in range(_MAX_CHUNKS):
            header = stream.read(8)
            if len(header) < 8:
                return False
            length, kind = struct.unpack(">I4s", header)
            if kind == b"acTL":
                return True
            if kind in (b"IDAT", b"IEND"):
                return False
            stream.seek(length + 4, 1)
    return False


def tiff_needs_pillow(path: Path) -> bool:
    """True for TIFFs libvips cannot read: float/int samples, CIELab, tiled separate planes,
    and compressions its libtiff lacks."""
    try:
        with Image.open(path) as image:
            if image.mode in ("F", "I", "LAB"):
                return True
            tags = getattr(image, "tag_v2", {})
            if tags.get(_TIFF_COMPRESSION) in _VIPS_MISSING_COMPRESSIONS:
                return True
            return bool(tags.get(_TIFF_PLANAR) == _SEPARATE_PLANES and _TIFF_TILE_WIDTH in tags)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False  # libvips then gives its own verdict


def to_vips(image: Image.Image, auto_orient: bool) -> pyvips.Image:
    """The current frame of `image` as an 8-bit pyvips image, with its ICC profile."""
    image.load()
    if auto_orient:
        image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if image.mode in ("F", "I", "I;16", "I;16B", "I;16L"):
        converted = _stretched(image)
    elif image.mode == "LAB":
        converted = _from_lab(image)
    else:
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            "transparency" in image.info
        )
        mode = "RGBA" if has_alpha else "RGB"
        if image.mode in ("L", "LA", "1"):
            mode = "LA" if has_alpha else "L"
        converted = _from_bytes(image.convert(mode))
    if icc:
        converted.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return converted


def to_vips_strip(image: Image.Image, frames: int) -> pyvips.Image:
    """The first `frames` frames of an animation, stacked as one libvips strip with its
    page-height, delays (ms) and loop count; Pillow composites APNG/AVIF frames itself."""
    pages, delays = [], []
    for index in range(frames):
        image.seek(index)
        image.load()
        pages.append(_from_bytes(image.convert("RGBA")))
        delays.append(int(image.info.get("duration") or _DEFAULT_DELAY_MS))
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", image.height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", delays)
    strip.set_type(pyvips.GValue.gint_type, "loop", int(image.info.get("loop", 0)))
    return strip


def _from_bytes(image: Image.Image) -> pyvips.Image:
    bands = len(image.getbands())
    converted = pyvips.Image.new_from_memory(
        image.tobytes(), image.width, image.height, bands, "uchar"
    )
    return converted.copy(interpretation="b-w" if bands <= 2 else "srgb")


def _stretched(image: Image.Image) -> pyvips.Image:
    floats = pyvips.Image.new_from_memory(
        image.convert("F").tobytes(), image.width, image.height, 1, "float"
    )
    low, high = floats.min(), floats.max()
    peak = 1.0 if image.mode == "F" else 255.0
    if low >= 0 and high <= peak:
        scaled = floats * (255.0 / peak)
    else:
        scaled = (floats - low) * (255.0 / ((high - low) or 1.0))
    return scaled.rint().cast("uchar").copy(interpretation="b-w")


def _from_lab(image: Image.Image) -> pyvips.Image:
    # TIFF CIELab: L* scaled to 0-255, a* and b* as signed bytes.
    raw = pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, 3, "uchar")
    lightness = raw.extract_band(0).cast("float") * (100 / 255)
    chroma = raw.extract_band(1, n=2).copy(format="char").cast("float")
    lab = lightness.bandjoin(chroma).copy(interpretation="lab")
    return lab.colourspace("srgb").cast("uchar")
