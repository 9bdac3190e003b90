"""The image tools that answer with one picture: thumbnail and transform.

thumbnail: `width` x `height` by `fit` (cover, contain, inside), encoded as `format` at
`quality`, without metadata (the ICC profile is kept).

transform, in this order: EXIF orientation applied; `crop*` (a rectangle of the upright
image, which must lie inside it); `rotate` clockwise by any angle (right angles are exact,
other angles widen the canvas, filled transparent where the format has alpha, else white);
`flip` (upside down) and `flop` (mirror); resize by `fit`; encode as `format` at `quality`
without metadata. Without crop or an odd angle, the resize happens while the file is decoded
(shrink-on-load), with the box turned for quarter turns.
"""

from __future__ import annotations

from pathlib import Path

import pyvips

from mesh.errors import MeshError, Reason
from mesh.options import Box, Fit
from mesh.outcome import Outcome
from mesh.tools.params import ThumbnailParams, TransformParams
from services.image import encode
from services.image.limits import ImageLimits, check_output
from services.image.resize import plan
from services.image.sources import Source, corrupt
from services.image.tools.boxes import fit_plan, load, opened, save

_NO_RESIZE = Box(None, None, Fit.NONE)


def thumbnail(
    source: Path, output: Path, source_format: str, params: ThumbnailParams, limits: ImageLimits
) -> Outcome:
    found = opened(source, source_format, limits)
    size = found.oriented_size(True)
    resize = fit_plan(params.fit, params.width, params.height, size)
    try:
        image = load(found, resize, params.format, limits)
        quality = save(image, output, params.format, params.quality)
    except pyvips.Error as error:
        raise corrupt() from error
    mime = encode.ENCODERS[params.format].mime_type
    return Outcome(params.format, mime, image.width, image.height, applied_quality=quality)


def _quarter_turns(angle: float) -> int | None:
    turns = angle / 90
    return round(turns) % 4 if turns == round(turns) else None


def transform(
    source: Path, output: Path, source_format: str, params: TransformParams, limits: ImageLimits
) -> Outcome:
    found = opened(source, source_format, limits)
    turns = _quarter_turns(params.rotate)
    try:
        if params.crop is None and turns is not None:
            image = _turned_on_load(found, params, turns, limits)
        else:
            image = _edited(found, params, turns, limits)
        if params.flip:
            image = image.flip("vertical")
        if params.flop:
            image = image.flip("horizontal")
        quality = save(image, output, params.format, params.quality)
    except pyvips.Error as error:
        raise corrupt() from error
    mime = encode.ENCODERS[params.format].mime_type
    return Outcome(params.format, mime, image.width, image.height, applied_quality=quality)


def _turn(image: pyvips.Image, turns: int) -> pyvips.Image:
    if turns == 0:
        return image
    # A turn reads the source out of order (a column at a time), which a sequential load (a
    # JPEG's) refuses: decode the already resized picture into memory once.
    return image.copy_memory().rot(("d0", "d90", "d180", "d270")[turns])


def _turned_on_load(
    found: Source, params: TransformParams, turns: int, limits: ImageLimits
) -> pyvips.Image:
    width, height = found.oriented_size(True)
    box_w, box_h = params.width, params.height
    if turns % 2:  # resized before the quarter turn: the box turns the other way
        box_w, box_h = box_h, box_w
    resize = fit_plan(params.fit, box_w, box_h, (width, height))
    return _turn(load(found, resize, params.format, limits), turns)


def _background(image: pyvips.Image) -> list[float]:
    return [0.0] * image.bands if image.hasalpha() else [255.0] * image.bands


def _edited(
    found: Source, params: TransformParams, turns: int | None, limits: ImageLimits
) -> pyvips.Image:
    full = plan(_NO_RESIZE, *found.oriented_size(True))
    image = load(found, full, params.format, limits)
    if params.crop is not None:
        image = _cropped(image, params.crop)
    if turns is not None:
        image = _turn(image, turns)
    else:
        if encode.ENCODERS[params.format].alpha and not image.hasalpha():
            image = image.bandjoin_const([255])
        # An odd angle reads the source out of order: decode it once into memory.
        image = image.copy_memory().rotate(params.rotate, background=_background(image))
    resize = fit_plan(params.fit, params.width, params.height, (image.width, image.height))
    check_output(resize.width, resize.height, 1, limits)
    if (resize.width, resize.height) == (image.width, image.height) and not resize.pad:
        return image
    if resize.size == "force":
        return image.resize(resize.width / image.width, vscale=resize.height / image.height)
    resized = pyvips.Image.thumbnail_image(
        image,
        resize.thumbnail_width,
        height=resize.thumbnail_height,
        size=resize.size,
        crop=resize.crop,
    )
    if resize.pad:
        if encode.ENCODERS[params.format].alpha and not resized.hasalpha():
            resized = resized.bandjoin_const([255])
        resized = resized.gravity(
            "centre",
            resize.width,
            resize.height,
            extend="background",
            background=_background(resized),
        )
    return resized


def _cropped(image: pyvips.Image, box: tuple[int, int, int, int]) -> pyvips.Image:
    left, top, width, height = box
    if left + width > image.width or top + height > image.height:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"The crop rectangle must lie inside the {image.width}x{image.height} image.",
            fields={
                "cropWidth": f"cropLeft + cropWidth must be at most {image.width}",
                "cropHeight": f"cropTop + cropHeight must be at most {image.height}",
            },
        )
    return image.crop(left, top, width, height)
