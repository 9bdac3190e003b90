"""Resize planning: a preset's box, met by one libvips `thumbnail` call plus an optional pad.

Planning is arithmetic on the oriented source size, so the output size is known (and checked
against the output limit) before any pixel is decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from mesh.options import Box, Fit

# libvips' VIPS_MAX_COORD: a thumbnail side that never constrains.
UNBOUNDED = 10_000_000


@dataclass(frozen=True)
class Plan:
    thumbnail_width: int
    thumbnail_height: int
    size: str  # libvips VipsSize: "down" never upscales, "both" may
    crop: str  # libvips VipsInteresting: "none" or "centre"
    width: int  # the final output size, after any pad
    height: int
    pad: bool  # embed the thumbnail centred on a width x height canvas


def plan(box: Box, width: int, height: int) -> Plan:
    """How to meet `box` from an oriented source of `width` x `height`."""
    size = "both" if box.upscale else "down"
    if box.fit is Fit.NONE or (box.width is None and box.height is None):
        return Plan(UNBOUNDED, UNBOUNDED, "down", "none", width, height, pad=False)
    if box.fit is Fit.COVER and box.width is not None and box.height is not None:
        scale = max(box.width / width, box.height / height)
        if not box.upscale:
            scale = min(scale, 1.0)
        out_w = min(box.width, max(1, round(width * scale)))
        out_h = min(box.height, max(1, round(height * scale)))
        return Plan(box.width, box.height, size, "centre", out_w, out_h, pad=False)
    box_w = box.width or UNBOUNDED
    box_h = box.height or UNBOUNDED
    scale = min(box_w / width, box_h / height)
    if not box.upscale:
        scale = min(scale, 1.0)
    out_w = max(1, round(width * scale))
    out_h = max(1, round(height * scale))
    if box.fit is Fit.CONTAIN and box.width is not None and box.height is not None:
        return Plan(box_w, box_h, size, "none", box.width, box.height, pad=True)
    return Plan(box_w, box_h, size, "none", out_w, out_h, pad=False)


def per_page(
    image: pyvips.Image, frames: int, change: Callable[[pyvips.Image], pyvips.Image]
) -> pyvips.Image:
    """`change` applied to each frame of a strip of `frames` equal frames, restacked."""
    if frames == 1:
        return change(image)
    page_height = image.height // frames
    pages = [
        change(image.crop(0, i * page_height, image.width, page_height)) for i in range(frames)
    ]
    joined = pyvips.Image.arrayjoin(pages, across=1).copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", pages[0].height)
    return joined
