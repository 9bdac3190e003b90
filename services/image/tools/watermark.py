"""watermark on an image: a text or logo mark (`mesh.tools.marks`) composited over the upright
image, written in the input's own format (bmp, ico and svg inputs become png), metadata kept
except the orientation, which is applied. An animation is marked on its first frame only."""

from __future__ import annotations

from pathlib import Path

import pyvips
from PIL import Image

from mesh.errors import MeshError
from mesh.options import DEFAULT_COMPRESSION, Box, Fit
from mesh.outcome import Outcome
from mesh.tools import marks
from mesh.tools.params import WatermarkParams
from services.image import encode
from services.image.limits import ImageLimits
from services.image.resize import plan
from services.image.sources import corrupt
from services.image.tools.boxes import load, opened, save

_NO_RESIZE = Box(None, None, Fit.NONE)
_LOGO_BOX = 4096


def logo_picture(logo: Path, logo_format: str, limits: ImageLimits) -> Image.Image:
    """The logo decoded within the limits (libvips, header first), as a Pillow RGBA image."""
    found = opened(logo, logo_format, limits)
    resize = plan(Box(_LOGO_BOX, _LOGO_BOX, Fit.INSIDE), *found.oriented_size(True))
    image = load(found, resize, "png", limits)
    image = encode.to_8bit_srgb(image)
    if image.interpretation == "b-w":
        image = image.colourspace("srgb")
    if not image.hasalpha():
        image = image.bandjoin_const([255])
    return Image.frombytes("RGBA", (image.width, image.height), image.write_to_memory())


def _as_vips(mark: Image.Image) -> pyvips.Image:
    image = pyvips.Image.new_from_memory(mark.tobytes(), mark.width, mark.height, 4, "uchar")
    return image.copy(interpretation="srgb")


def watermark(
    source: Path,
    output: Path,
    source_format: str,
    params: WatermarkParams,
    limits: ImageLimits,
    *,
    logo: tuple[Path, str] | None = None,
) -> Outcome:
    params.require_one(logo is not None)
    target = source_format if source_format in encode.ENCODERS else "png"
    found = opened(source, source_format, limits)
    try:
        picture = logo_picture(*logo, limits) if logo is not None else None
    except MeshError as error:
        raise MeshError(
            error.reason,
            f"The watermark file: {error.message}",
            fields={"watermarkFile": "must be an image within the limits"},
        ) from error
    try:
        image = load(found, plan(_NO_RESIZE, *found.oriented_size(True)), target, limits)
        mark = marks.render(params, picture, image.width)
        x, y = marks.offset(params.position, (image.width, image.height), mark.size, params.margin)
        base = encode.to_8bit_srgb(image)
        if base.interpretation == "b-w":
            base = base.colourspace("srgb")
        marked = base.composite2(_as_vips(mark), "over", x=x, y=y).cast("uchar")
        if not image.hasalpha():
            marked = marked.flatten()
        quality = save(marked, output, target, DEFAULT_COMPRESSION, keep=True)
    except pyvips.Error as error:
        raise corrupt() from error
    mime = encode.ENCODERS[target].mime_type
    return Outcome(target, mime, marked.width, marked.height, applied_quality=quality)
