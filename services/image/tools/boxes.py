"""Fits for the image tools, named and behaving as in sharp (whose names the API uses), and the
load-and-shape steps every image tool shares.

| fit | result |
| --- | --- |
| cover | exactly width x height, aspect kept, the overflow cut from the centre |
| contain | exactly width x height, fitted inside, padded (transparent with alpha, else white) |
| fill | exactly width x height, the aspect ignored |
| inside | as large as possible within width x height, aspect kept |
| outside | as small as possible covering width x height, aspect kept |

Every fit may enlarge, as sharp's do by default. With only one side given the image scales to
it, aspect kept, whatever the fit. All of it is arithmetic on the header's (oriented) size, so
the output size is checked against the limits before a pixel is decoded.
"""

from __future__ import annotations

from pathlib import Path

import pyvips

from mesh.options import Box, ConversionOptions, Fit
from services.image import encode
from services.image.decode import open_source
from services.image.limits import ImageLimits, check_output, guard_pillow
from services.image.pipeline import shape
from services.image.resize import Plan, plan
from services.image.sources import Source

_SHARP_FITS = {"cover": Fit.COVER, "contain": Fit.CONTAIN, "inside": Fit.INSIDE}


def fit_plan(fit: str, width: int | None, height: int | None, size: tuple[int, int]) -> Plan:
    """How to meet `fit` into `width` x `height` (either may be None) from `size`."""
    source_w, source_h = size
    if width is None and height is None:
        return plan(Box(None, None, Fit.NONE), source_w, source_h)
    if width is None or height is None:
        return plan(Box(width, height, Fit.INSIDE, upscale=True), source_w, source_h)
    if fit in _SHARP_FITS:
        return plan(Box(width, height, _SHARP_FITS[fit], upscale=True), source_w, source_h)
    if fit == "outside":
        scale = max(width / source_w, height / source_h)
        width, height = max(1, round(source_w * scale)), max(1, round(source_h * scale))
    return Plan(width, height, "force", "none", width, height, pad=False)


def opened(source: Path, source_format: str, limits: ImageLimits, animate: bool = False) -> Source:
    guard_pillow(limits)
    return open_source(source, source_format, limits, animate=animate)


def load(
    found: Source, resize: Plan, target: str, limits: ImageLimits, frames: int = 1
) -> pyvips.Image:
    """The image resized by `resize`, upright, padded for `contain`, and flattened onto white
    if `target` cannot hold alpha."""
    check_output(resize.width, resize.height, frames, limits)
    image = found.load(resize, auto_orient=True)
    return shape(image, resize, found, target, ConversionOptions(format=target))


def save(
    image: pyvips.Image, output: Path, fmt: str, quality: int, keep: bool = False
) -> int | None:
    """Encodes `image` as `fmt` at the API's 1-100 `quality`; returns the quality applied (None
    for the lossless formats)."""
    encoder = encode.ENCODERS[fmt]
    applied = encode.quality_for(fmt, quality)
    encode.save(image, output, encode.Encoding(fmt, applied, keep_metadata=keep))
    return applied if encoder.lossy else None
