"""Watermarks for both workers that place them (image and media): the mark itself as a
Pillow RGBA picture, its width, and where it sits on the picture it marks.

A text mark is white with a dark outline, so it reads on light and dark pictures alike, in
Pillow's built-in scalable font (no font files needed on the worker). A logo is scaled to the
mark's width. `opacity` multiplies the mark's own alpha. Placement: `position` names the edge or
corner (`center` the middle), `margin` keeps it that far from the edges it touches.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from mesh.tools.params import WatermarkParams

_PROBE_SIZE = 100  # font size at which text is measured before it is scaled to the width
_MAX_FONT = 2000


def mark_width(params: WatermarkParams, canvas_width: int) -> int:
    """The mark's width: as asked, else a quarter of the picture; never wider than the picture
    inside its margins."""
    wanted = params.watermark_width or max(1, canvas_width // 4)
    return max(1, min(wanted, canvas_width - 2 * params.margin, canvas_width))


def text_mark(text: str, width: int) -> Image.Image:
    probe = ImageFont.load_default(size=_PROBE_SIZE)
    left, top, right, bottom = probe.getbbox(text, stroke_width=_PROBE_SIZE // 16)
    size = max(4, min(_MAX_FONT, round(_PROBE_SIZE * width / max(1, right - left))))
    font = ImageFont.load_default(size=size)
    stroke = max(1, size // 16)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    box = (max(1, round(right - left)), max(1, round(bottom - top)))
    mark = Image.new("RGBA", box, (0, 0, 0, 0))
    ImageDraw.Draw(mark).text(
        (-left, -top),
        text,
        font=font,
        fill=(255, 255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 200),
    )
    if mark.width > width:
        mark = scaled(mark, width)
    return mark


def scaled(logo: Image.Image, width: int) -> Image.Image:
    height = max(1, round(logo.height * width / logo.width))
    return logo.convert("RGBA").resize((width, height), Image.Resampling.LANCZOS)


def faded(mark: Image.Image, opacity: float) -> Image.Image:
    alpha = mark.getchannel("A").point(lambda value: round(value * opacity))
    faded = mark.copy()
    faded.putalpha(alpha)
    return faded


def offset(
    position: str, canvas: tuple[int, int], mark: tuple[int, int], margin: int
) -> tuple[int, int]:
    """The mark's top-left corner on the canvas."""
    (canvas_w, canvas_h), (mark_w, mark_h) = canvas, mark
    vertical, _, horizontal = position.partition("-")
    if not horizontal and vertical in ("left", "right", "center"):
        vertical, horizontal = "middle", vertical
    x = {"left": margin, "right": canvas_w - mark_w - margin}.get(
        horizontal, (canvas_w - mark_w) // 2
    )
    y = {"top": margin, "bottom": canvas_h - mark_h - margin}.get(
        vertical, (canvas_h - mark_h) // 2
    )
    return max(0, min(x, canvas_w - mark_w)), max(0, min(y, canvas_h - mark_h))


def render(params: WatermarkParams, logo: Image.Image | None, canvas_width: int) -> Image.Image:
    """The faded mark for a picture `canvas_width` wide."""
    width = mark_width(params, canvas_width)
    mark = scaled(logo, width) if logo is not None else text_mark(params.text, width)
    return faded(mark, params.opacity)
