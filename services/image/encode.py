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

Encoder effort is set for a 2-core worker from `bench/image.py` measurements (1800x1200 photo,
Q 82 / AVIF Q 64; mean abs error vs the source in brackets):

| encoder   | effort: seconds, KiB (error)                                      | chosen |
| --------- | ----------------------------------------------------------------- | ------ |
| webpsave  | 0: 0.08 s 396 (2.34), 2: 0.14 s 351 (2.46), 4: 0.28 s 342 (2.38), 6: 0.81 s 337 | 2 |
| heifsave  | 0: 0.21 s 272 (2.09), 1: 0.55 s 270 (1.97), 2: 0.83 s 274 (1.78), 4: 4.65 s 270 | 1 |

WebP effort 2 is twice as fast as 4 for 3% more bytes, and at 100 MP it peaks at 484 MiB
against 921 MiB (libwebp's methods 4+ keep extra per-pixel state); lossless WebP keeps effort 4.
AV1 effort 0 is 2.7x faster than 1 but 6% worse at the same size; 2 is 1.5x slower. x265
preset "fast" is 3-4x faster than its default for a few percent in size; gif palette effort 3.

AV1 and HEVC at a given Q look better than JPEG at the same number: libvips documents AVIF
Q 50 as roughly JPEG Q 75, which is where the curve's knee sits. Target-size mode searches
these same settings (and palette depth for png/gif), see targetsize.py.

Compress jobs that keep the format (`thorough` encodings) spend more effort for fewer bytes,
and never raise the quality above the source's (`compress_quality`; a compression left at the
API default 82 asks for the format's compress default):

| format | compress setting |
| ------ | ---------------- |
| jpg  | Q = min(c, the source's quality estimated from its quantisation tables); trellis
         quantisation, progressive scans, optimised scans and Huffman tables (mozjpeg) |
| png  | lossless: zlib 9 with adaptive filters; a palette when that keeps every pixel; ICC only |
| webp | a lossless (VP8L) source stays lossless at effort 6; lossy: Q = c (75 for the default) |
| avif, heif | the curve above, AV1 effort 2 |
| gif  | palette effort 7 |
| tiff | deflate level 9 with the horizontal predictor |

Whatever they give, the pipeline hands back the source itself when the result is not smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pillow_heif
import pyvips

ANIMATED_OUTPUTS = frozenset({"gif", "webp"})
LOSSY_WEBP_EFFORT = 2
COMPRESS_WEBP_QUALITY = 75
# A palette PNG is tried (and its pixels compared) only up to this size: it needs the image
# in memory twice.
PALETTE_TRIAL_MAX_PIXELS = 16_000_000
# Optimised Huffman tables make JPEGs a few percent smaller but hold every DCT coefficient
# until the end: 634 MiB at 100 MP against 68 MiB streaming. Above this, stream.
OPTIMIZE_CODING_MAX_PIXELS = 16_000_000
AVIF_EFFORT = 1


@dataclass(frozen=True)
class Encoding:
    """One encode's settings. `quality` None means the encoder's lossless/default path."""

    format: str
    quality: int | None
    lossless: bool = False
    keep_metadata: bool = True
    palette_bits: int = 8  # png/gif: colours = 2**bits; png only quantises below 8 bits or Q
    # Compress jobs: more encoder effort for fewer bytes (see the compress table above).
    thorough: bool = False


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


def compress_quality(
    output_format: str, compression: int, source_quality: int | None, default: int
) -> int | None:
    """The encoder quality of a compress job keeping the format: never above the source's
    estimated quality; the API default compression means the format's compress default."""
    quality = quality_for(output_format, compression)
    if quality is None:
        return None
    if output_format == "webp" and compression == default:
        quality = COMPRESS_WEBP_QUALITY
    if source_quality is not None:
        quality = min(quality, source_quality)
    return quality


def _keep(encoding: Encoding) -> int:
    keep: int = pyvips.ForeignKeep.ALL if encoding.keep_metadata else pyvips.ForeignKeep.ICC
    return keep


def save(image: pyvips.Image, path: Path, encoding: Encoding) -> None:
    """Writes `image` once (sequential sources cannot be read twice)."""
    fmt, q, keep = encoding.format, encoding.quality, _keep(encoding)
    target = str(path)
    thorough = encoding.thorough
    if fmt == "jpg":
        # Optimised tables and progressive scans hold every coefficient until the end.
        optimize = image.width * image.height <= OPTIMIZE_CODING_MAX_PIXELS
        extra = _MOZJPEG if thorough and optimize else {}
        image.jpegsave(target, Q=q or 100, optimize_coding=optimize, keep=keep, **extra)
    elif fmt == "webp":
        if encoding.lossless:
            image.webpsave(target, lossless=True, effort=6 if thorough else 4, keep=keep)
        else:
            effort = 4 if thorough else LOSSY_WEBP_EFFORT
            image.webpsave(target, Q=q or 82, effort=effort, keep=keep)
    elif fmt == "avif":
        effort = AVIF_EFFORT + 1 if thorough else AVIF_EFFORT
        if encoding.lossless:
            image.heifsave(target, lossless=True, compression="av1", effort=effort, keep=keep)
        else:
            image.heifsave(target, Q=q or 64, compression="av1", effort=effort, keep=keep)
    elif fmt == "png" and thorough:
        _save_png_thorough(image, path, keep)
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
        level = {"level": 9} if thorough else {}
        image.tiffsave(target, compression="deflate", predictor="horizontal", keep=keep, **level)
    elif fmt == "gif":
        effort = 7 if thorough else 3
        image.gifsave(target, bitdepth=encoding.palette_bits, effort=effort, keep=keep)
    elif fmt == "heif":
        _save_hevc(image, path, encoding)
    else:
        raise ValueError(f"no raster encoder for {fmt}")


_MOZJPEG = {
    "interlace": True,
    "trellis_quant": True,
    "overshoot_deringing": True,
    "optimize_scans": True,
}


def _same_pixels(a: pyvips.Image, b: pyvips.Image) -> bool:
    if a.bands != b.bands:
        if a.hasalpha() == b.hasalpha():
            return False
        a, b = (a, b.bandjoin(255)) if a.hasalpha() else (a.bandjoin(255), b)
    return bool((a - b).abs().max() == 0)


def _save_png_thorough(image: pyvips.Image, path: Path, keep: int) -> None:
    """Lossless PNG at its smallest: zlib 9 with adaptive filters, and a palette instead
    when it holds every pixel exactly (a palette or few-colour source)."""
    keep = keep & pyvips.ForeignKeep.ICC
    fits = image.format == "uchar" and image.width * image.height <= PALETTE_TRIAL_MAX_PIXELS
    if fits:
        image = image.copy_memory()
    image.pngsave(str(path), compression=9, filter="all", keep=keep)
    if not fits:
        return
    candidate = path.with_name(path.name + ".palette")
    try:
        image.pngsave(
            str(candidate), compression=9, palette=True, Q=100, dither=0, effort=10, keep=keep
        )
        smaller = candidate.stat().st_size < path.stat().st_size
        reread = pyvips.Image.new_from_file(str(candidate), access="sequential")
        if smaller and _same_pixels(image, reread.copy_memory()):
            candidate.replace(path)
    finally:
        candidate.unlink(missing_ok=True)


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
    if image.get_typeof("icc-profile-data"):
        extra["icc_profile"] = image.get("icc-profile-data")
    if encoding.keep_metadata and image.get_typeof("exif-data"):
        extra["exif"] = image.get("exif-data")
    quality = -1 if encoding.lossless else (encoding.quality or 64)
    # x265's default preset is several times slower for a few percent in size.
    heif.save(str(path), quality=quality, enc_params={"preset": "fast"}, **extra)
