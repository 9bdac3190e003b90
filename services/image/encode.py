"""Encoders: what each raster output format can hold, and the compression→quality table.

`compression` (1-100, API default 82) is the client's "output quality". Each lossy encoder
gets its own scale, because the same number means different things per codec:

| output | encoder                     | setting from compression c                          |
| ------ | --------------------------- | --------------------------------------------------- |
| jpg    | libvips jpegsave (mozjpeg)  | Q = c; lossless is not possible, Q = c still        |
| webp   | libvips webpsave            | Q = c; lossless=true → VP8L lossless                |
| avif   | libvips heifsave (AV1)      | Q = 2c/3 up to c=75, then 50 + 2(c-75) (82 → 64)    |
| heif   | pillow-heif (x265 HEVC)     | same curve as avif; lossless=true → x265 lossless   |
| png    | libvips pngsave             | always lossless, zlib level 6; c unused (None)      |
| tiff   | libvips tiffsave            | always lossless (deflate + predictor); c unused      |
| gif    | libvips gifsave             | 256-colour palette, dithered; c unused (None)       |

Encoder effort is set for a 2-core worker: AV1 effort 1 and x265 preset "fast" are 3-4x faster
than the defaults for a few percent in size; gif palette effort 3.

AV1 and HEVC at a given Q look better than JPEG at the same number: libvips documents AVIF
Q 50 as roughly JPEG Q 75, which is where the curve's knee sits. Target-size mode searches
these same settings (and palette depth for png/gif), see targetsize.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pillow_heif
import pyvips

ANIMATED_OUTPUTS = frozenset({"gif", "webp"})


@dataclass(frozen=True)
class Encoding:
    """One encode's settings. `quality` None means the encoder's lossless/default path."""

    format: str
    quality: int | None
    lossless: bool = False
    keep_metadata: bool = True
    palette_bits: int = 8  # png/gif: colours = 2**bits; png only quantises below 8 bits or Q


@dataclass(frozen=True)
class Encoder:
    name: str
    mime_type: str
    alpha: bool
    lossy: bool


ENCODERS: dict[str, Encoder] = {
    e.name: e
    for e in (
        Encoder("jpg", "image/jpeg", alpha=False, lossy=True),
        Encoder("png", "image/png", alpha=True, lossy=False),
        Encoder("webp", "image/webp", alpha=True, lossy=True),
        Encoder("avif", "image/avif", alpha=True, lossy=True),
        Encoder("tiff", "image/tiff", alpha=True, lossy=False),
        Encoder("gif", "image/gif", alpha=True, lossy=False),
        Encoder("heif", "image/heif", alpha=True, lossy=True),
    )
}


def quality_for(output_format: str, compression: int) -> int | None:
    """The encoder quality for a client compression value; None for lossless-only formats."""
    c = max(1, min(100, compression))
    if output_format in ("jpg", "webp"):
        return c
    if output_format in ("avif", "heif"):
        return max(1, round(c * 2 / 3)) if c <= 75 else round(50 + (c - 75) * 2)
    return None


def _keep(encoding: Encoding) -> int:
    keep: int = pyvips.ForeignKeep.ALL if encoding.keep_metadata else pyvips.ForeignKeep.ICC
    return keep


def save(image: pyvips.Image, path: Path, encoding: Encoding) -> None:
    """Writes `image` once (sequential sources cannot be read twice)."""
    fmt, q, keep = encoding.format, encoding.quality, _keep(encoding)
    target = str(path)
    if fmt == "jpg":
        image.jpegsave(target, Q=q or 100, optimize_coding=True, keep=keep)
    elif fmt == "webp":
        if encoding.lossless:
            image.webpsave(target, lossless=True, effort=4, keep=keep)
        else:
            image.webpsave(target, Q=q or 82, effort=4, keep=keep)
    elif fmt == "avif":
        if encoding.lossless:
            image.heifsave(target, lossless=True, compression="av1", effort=1, keep=keep)
        else:
            image.heifsave(target, Q=q or 64, compression="av1", effort=1, keep=keep)
    elif fmt == "png":
        if encoding.palette_bits < 8 or q is not None:
            image.pngsave(
                target,
                compression=6,
                palette=True,
                Q=q or 100,
                bitdepth=encoding.palette_bits,
                keep=keep,
            )
        else:
            image.pngsave(target, compression=6, keep=keep)
    elif fmt == "tiff":
        image.tiffsave(target, compression="deflate", predictor="horizontal", keep=keep)
    elif fmt == "gif":
        image.gifsave(target, bitdepth=encoding.palette_bits, effort=3, keep=keep)
    elif fmt == "heif":
        _save_hevc(image, path, encoding)
    else:
        raise ValueError(f"no raster encoder for {fmt}")


def to_8bit_srgb(image: pyvips.Image) -> pyvips.Image:
    """sRGB (or grey) uchar, for encoders outside libvips."""
    if image.format != "uchar" or image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("srgb").cast("uchar")
    return image


def _save_hevc(image: pyvips.Image, path: Path, encoding: Encoding) -> None:
    # The libvips wheel's libheif has no HEVC encoder; pillow-heif bundles x265.
    image = to_8bit_srgb(image)
    if image.interpretation == "b-w":
        image = image.colourspace("srgb")
    mode = "RGBA" if image.bands == 4 else "RGB"
    heif = pillow_heif.from_bytes(mode, (image.width, image.height), image.write_to_memory())
    extra: dict[str, object] = {}
    if "icc-profile-data" in image.get_fields():
        extra["icc_profile"] = image.get("icc-profile-data")
    if encoding.keep_metadata and "exif-data" in image.get_fields():
        extra["exif"] = image.get("exif-data")
    quality = -1 if encoding.lossless else (encoding.quality or 64)
    # x265's default preset is several times slower for a few percent in size.
    heif.save(str(path), quality=quality, enc_params={"preset": "fast"}, **extra)
