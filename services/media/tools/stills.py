"""The media tools that answer with a picture of a video: thumbnail, poster-frame, storyboard.

Frames come from `frames` (upright, display aspect); Pillow shrinks, fits and encodes them
(jpg, png, webp, avif; no metadata is written). Fits follow sharp, whose names the API uses:
`cover` fills the box exactly and crops the centre, `contain` fits inside and pads to the box
(white for jpg, transparent otherwise), `inside` fits inside; all three may enlarge. A poster
frame is `width` wide at most (never enlarged); a storyboard is `frames` tiles `width` px wide,
`columns` to a row, taken at the middle of equal slices of the video.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageOps

from mesh.errors import MeshError, Reason
from mesh.outcome import Outcome
from mesh.tools.params import PosterFrameParams, StoryboardParams, ThumbnailParams
from services.media.limits import MediaLimits
from services.media.tools import frames
from services.media.tools.running import probed

MIME_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
_PILLOW_NAMES = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
_FAST_AVIF = 8  # libavif speed 0-10: the worker has two cores


def thumbnail(
    source: Path, output: Path, source_format: str, params: ThumbnailParams, limits: MediaLimits
) -> Outcome:
    _check_size(params.width, params.height, limits)
    found = probed(source, source_format, limits)
    time = _clamped(params.timestamp, frames.duration_of(source, source_format, found, limits))
    (frame,) = frames.frames_at(source, source_format, found, [time], limits)
    image = fitted(frame, params.width, params.height, params.fit, params.format)
    return encode(image, output, params.format, params.quality)


def poster_frame(
    source: Path, output: Path, source_format: str, params: PosterFrameParams, limits: MediaLimits
) -> Outcome:
    found = probed(source, source_format, limits)
    time = _clamped(params.timestamp, frames.duration_of(source, source_format, found, limits))
    (frame,) = frames.frames_at(source, source_format, found, [time], limits)
    if frame.width > params.width:
        height = max(1, round(frame.height * params.width / frame.width))
        frame = frame.resize((params.width, height), Image.Resampling.LANCZOS)
    return encode(frame, output, params.format, params.quality)


def storyboard(
    source: Path, output: Path, source_format: str, params: StoryboardParams, limits: MediaLimits
) -> Outcome:
    found = probed(source, source_format, limits, orient=True)
    if found.video is None:
        raise MeshError(Reason.UNSUPPORTED_PAIR, "The input has no video to make a storyboard of.")
    width, height = frames.display_size(found)
    if found.video.rotation in (90, -90, 270):
        width, height = height, width
    tile_w = params.width
    tile_h = max(1, round(tile_w * height / width))
    columns = min(params.columns, params.frames)
    rows = math.ceil(params.frames / columns)
    _check_size(columns * tile_w, rows * tile_h, limits)
    duration = frames.duration_of(source, source_format, found, limits)
    times = [duration * (index + 0.5) / params.frames for index in range(params.frames)]
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h))
    for index, frame in enumerate(frames.frames_at(source, source_format, found, times, limits)):
        tile = ImageOps.fit(frame, (tile_w, tile_h), Image.Resampling.LANCZOS)
        sheet.paste(tile, ((index % columns) * tile_w, (index // columns) * tile_h))
    return encode(sheet, output, params.format, params.quality)


def _clamped(seconds: float, duration: float) -> float:
    """A time past the end means the last frame, as a player shows it."""
    return max(0.0, min(seconds, duration))


def _check_size(width: int, height: int, limits: MediaLimits) -> None:
    if width * height > limits.max_pixels:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The picture would be {width}x{height}; at most {limits.max_pixels} pixels are "
            "allowed.",
            limit="output_pixels",
            width=width,
            height=height,
        )


def fitted(image: Image.Image, width: int, height: int, fit: str, fmt: str) -> Image.Image:
    if fit == "cover":
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    if fit == "contain":
        mode = "RGB" if fmt == "jpg" else "RGBA"
        background = (255, 255, 255) if fmt == "jpg" else (0, 0, 0, 0)
        return ImageOps.pad(image.convert(mode), (width, height), color=background)
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode(image: Image.Image, output: Path, fmt: str, quality: int) -> Outcome:
    options: dict[str, object] = {}
    if fmt == "jpg":
        image = image.convert("RGB")
        options = {"quality": quality, "optimize": True}
    elif fmt in ("webp", "avif"):
        options = {"quality": quality}
        if fmt == "avif":
            options["speed"] = _FAST_AVIF
    with output.open("wb") as file:
        image.save(file, _PILLOW_NAMES[fmt], **options)
    lossy = fmt != "png"
    return Outcome(
        fmt, MIME_TYPES[fmt], image.width, image.height, applied_quality=quality if lossy else None
    )
