"""Frame geometry: rotation, sample aspect and the resize box become one output size and the
FFmpeg filters that produce it. Video encoders want 4:2:0 frames, so every side is even."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from mesh.options import Box, Fit


@dataclass(frozen=True)
class FramePlan:
    width: int
    height: int
    filters: tuple[tuple[str, str], ...]


def even_within(value: float) -> int:
    """The largest even size not above `value`: neither the box nor the source is exceeded."""
    return max(2, math.floor(value / 2 + 1e-6) * 2)


def even_covering(value: float) -> int:
    return max(2, math.ceil(value / 2 - 1e-6) * 2)


def _rotation_filters(rotation: int) -> tuple[tuple[str, str], ...]:
    # The display matrix stores a counter-clockwise angle; FFmpeg's CLI turns it the same way.
    turn = round(-rotation / 90) % 4
    return (
        (),
        (("transpose", "clock"),),
        (("hflip", ""), ("vflip", "")),
        (("transpose", "cclock"),),
    )[turn]


def _scale_factor(width: float, height: float, box: Box) -> float:
    factors = [side / size for side, size in ((box.width, width), (box.height, height)) if side]
    if not factors:
        return 1.0
    factor = max(factors) if box.fit is Fit.COVER else min(factors)
    return factor if box.upscale else min(factor, 1.0)


def plan_frames(
    width: int, height: int, sample_aspect: Fraction, rotation: int, box: Box
) -> FramePlan:
    """The output size for a frame of `width`x`height` stored pixels and its filter chain."""
    filters = list(_rotation_filters(rotation))
    aspect = sample_aspect if sample_aspect > 0 else Fraction(1)
    display_w, display_h = width * float(aspect), float(height)
    if len(filters) == 1:  # a quarter turn swaps the sides
        display_w, display_h = display_h, display_w
    if box.fit is Fit.NONE:
        out_w, out_h = even_within(display_w), even_within(display_h)
        filters.append(("scale", f"{out_w}:{out_h}"))
        return FramePlan(out_w, out_h, (*filters, ("setsar", "1")))
    factor = _scale_factor(display_w, display_h, box)
    scaled_w, scaled_h = display_w * factor, display_h * factor
    if box.fit is Fit.COVER and box.width and box.height:
        # Scale so both sides cover the box, then cut the overflow from the centre.
        out_w, out_h = even_within(min(box.width, scaled_w)), even_within(min(box.height, scaled_h))
        scale_w, scale_h = even_covering(scaled_w), even_covering(scaled_h)
        filters += [("scale", f"{scale_w}:{scale_h}"), ("crop", f"{out_w}:{out_h}")]
    elif box.fit is Fit.CONTAIN and box.width and box.height:
        out_w, out_h = even_within(box.width), even_within(box.height)
        scale_w, scale_h = min(out_w, even_within(scaled_w)), min(out_h, even_within(scaled_h))
        filters += [
            ("scale", f"{scale_w}:{scale_h}"),
            ("pad", f"{out_w}:{out_h}:(ow-iw)/2:(oh-ih)/2:color=white"),
        ]
    else:
        out_w, out_h = even_within(scaled_w), even_within(scaled_h)
        filters.append(("scale", f"{out_w}:{out_h}"))
    return FramePlan(out_w, out_h, (*filters, ("setsar", "1")))
