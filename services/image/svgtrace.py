"""SVG output: vectorising a raster with vtracer.

`compression` is the tracing detail (API.md): higher keeps more colours and smaller specks,
lower merges them. `mono` traces a one-colour silhouette (dark on light) instead of colour
layers. Tracing cost grows quickly with pixel count, so the raster is first fitted inside
TRACE_MAX_SIDE.
"""

from __future__ import annotations

from pathlib import Path

import pyvips
import vtracer

TRACE_MAX_SIDE = 1024


def settings(compression: int) -> dict[str, int]:
    """vtracer parameters for a detail level 1-100 (82 → speckle 4, 7 bits, layer step 15)."""
    c = max(1, min(100, compression))
    return {
        "filter_speckle": round(1 + (100 - c) / 100 * 15),
        "color_precision": round(2 + c / 100 * 6),
        "layer_difference": round(4 + (100 - c) / 100 * 60),
    }


def trace(image: pyvips.Image, output: Path, compression: int, mono: bool) -> tuple[int, int]:
    """Writes the traced SVG; returns its declared width and height."""
    if max(image.width, image.height) > TRACE_MAX_SIDE:
        image = image.thumbnail_image(TRACE_MAX_SIDE, height=TRACE_MAX_SIDE, size="down")
    if mono:
        image = image.colourspace("b-w")
        if image.hasalpha():
            image = image.flatten(background=[255])
    png = image.colourspace("srgb").cast("uchar").pngsave_buffer(compression=1)
    svg = vtracer.convert_raw_image_to_svg(
        png,
        img_format="png",
        colormode="binary" if mono else "color",
        hierarchical="stacked",
        mode="spline",
        **settings(compression),
    )
    output.write_text(svg, encoding="utf-8")
    return image.width, image.height
