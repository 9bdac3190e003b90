"""The media tools' parameters (API.md "Media tools"): one frozen dataclass per tool with every
default of the contract, shared by the gateway (which parses the form), the orchestrator (which
carries them to a worker as `to_fields` strings) and the workers (which parse them again).

Where API.md is silent (ours): seconds are capped syntactically here and against the media's
own duration by the worker; sides are at most 16384 px here and within each worker's pixel
limits there; `format` "" on trim means the input's own format.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import MeshError, Reason
from mesh.fields import FieldErrors, flag, number, one_of, param, text, whole
from mesh.options import PRESETS

MEDIA_FORMATS = ("mp4", "webm", "mov", "mp3", "m4a", "wav", "ogg", "flac")
AUDIO_FORMATS = ("mp3", "m4a", "wav", "ogg", "flac")
STILL_FORMATS = ("jpg", "png", "webp", "avif")
IMAGE_FORMATS = ("jpg", "png", "webp", "avif", "tiff", "gif", "heif")
POSITIONS = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)
PAGE_SIZES = ("auto", "letter", "a4")
MAX_SIDE = 16384
MAX_SECONDS = 7 * 24 * 3600.0
MAX_GIF_SECONDS = 60.0
MAX_TEXT = 200

_side = whole(1, MAX_SIDE)
_quality = whole(1, 100)
_seconds = number(0, MAX_SECONDS)


@dataclass(frozen=True)
class MediaConvertParams:
    format: str = param("format", "mp4", one_of(*MEDIA_FORMATS))
    compression_level: int = param("compressionLevel", 75, whole(1, 100))
    resize: str = param("resize", "original", one_of(*PRESETS))
    resize_width: int | None = param("resizeWidth", None, _side)
    resize_height: int | None = param("resizeHeight", None, _side)

    def check(self, problems: FieldErrors) -> None:
        if self.resize in ("width", "square") and self.resize_width is None:
            problems.add("resizeWidth", f"is required with resize={self.resize}")
        if self.resize == "height" and self.resize_height is None:
            problems.add("resizeHeight", "is required with resize=height")


@dataclass(frozen=True)
class ExtractAudioParams:
    format: str = param("format", "mp3", one_of(*AUDIO_FORMATS))
    bitrate_kbps: int = param("bitrateKbps", 192, whole(32, 320))


@dataclass(frozen=True)
class TrimParams:
    start: float = param("start", 0.0, _seconds)
    duration: float = param("duration", 10.0, number(0.05, MAX_SECONDS))
    # "" keeps the input's own format.
    format: str = param("format", "", one_of(*MEDIA_FORMATS))


@dataclass(frozen=True)
class GifParams:
    start: float = param("start", 0.0, _seconds)
    duration: float = param("duration", 4.0, number(0.1, MAX_GIF_SECONDS))
    width: int = param("width", 480, whole(16, 1920))
    fps: int = param("fps", 12, whole(1, 30))


@dataclass(frozen=True)
class ThumbnailParams:
    format: str = param("format", "jpg", one_of(*STILL_FORMATS))
    width: int = param("width", 512, _side)
    height: int = param("height", 512, _side)
    fit: str = param("fit", "cover", one_of("cover", "contain", "inside"))
    quality: int = param("quality", 82, _quality)
    timestamp: float = param("timestamp", 1.0, _seconds)  # video only


@dataclass(frozen=True)
class PosterFrameParams:
    timestamp: float = param("timestamp", 1.0, _seconds)
    format: str = param("format", "jpg", one_of(*STILL_FORMATS))
    width: int = param("width", 1280, _side)
    quality: int = param("quality", 86, _quality)


@dataclass(frozen=True)
class StoryboardParams:
    frames: int = param("frames", 12, whole(1, 100))
    columns: int = param("columns", 4, whole(1, 20))
    width: int = param("width", 240, whole(16, 1920))  # of one tile
    format: str = param("format", "jpg", one_of(*STILL_FORMATS))
    quality: int = param("quality", 86, _quality)


@dataclass(frozen=True)
class InspectParams:
    # The upload's name, echoed in the document (the worker never sees client file names).
    filename: str = param("filename", "", text(1024))


@dataclass(frozen=True)
class StripMetadataParams:
    pass


@dataclass(frozen=True)
class ImageToPdfParams:
    page_size: str = param("pageSize", "auto", one_of(*PAGE_SIZES))


@dataclass(frozen=True)
class PdfPreviewParams:
    format: str = param("format", "jpg", one_of(*STILL_FORMATS))
    page: int = param("page", 1, whole(1, 1_000_000))
    width: int = param("width", 1600, _side)
    quality: int = param("quality", 86, _quality)


@dataclass(frozen=True)
class WatermarkParams:
    """`text`, or a second file (`watermarkFile`) given to the tool beside the source."""

    text: str = param("text", "", text(MAX_TEXT))
    position: str = param("position", "bottom-right", one_of(*POSITIONS))
    opacity: float = param("opacity", 0.72, number(0, 1))
    margin: int = param("margin", 32, whole(0, MAX_SIDE))
    # None: a quarter of the picture's width.
    watermark_width: int | None = param("watermarkWidth", None, _side)

    def require_one(self, has_logo: bool) -> None:
        """Text or a logo file: exactly one of them."""
        if has_logo and self.text:
            raise MeshError(
                Reason.INVALID_FIELD,
                "Give either text or watermarkFile, not both.",
                fields={"text": "must be empty when watermarkFile is given"},
            )
        if not has_logo and not self.text.strip():
            raise MeshError(
                Reason.INVALID_FIELD,
                "A watermark needs text or a watermarkFile.",
                fields={"text": "is required without watermarkFile"},
            )


@dataclass(frozen=True)
class TransformParams:
    format: str = param("format", "webp", one_of(*IMAGE_FORMATS))
    width: int | None = param("width", None, _side)
    height: int | None = param("height", None, _side)
    fit: str = param("fit", "cover", one_of("cover", "contain", "fill", "inside", "outside"))
    rotate: float = param("rotate", 0.0, number(-360, 360))
    flip: bool = param("flip", False, flag)
    flop: bool = param("flop", False, flag)
    quality: int = param("quality", 86, _quality)
    crop_left: int | None = param("cropLeft", None, whole(0, 10_000_000))
    crop_top: int | None = param("cropTop", None, whole(0, 10_000_000))
    crop_width: int | None = param("cropWidth", None, whole(1, 10_000_000))
    crop_height: int | None = param("cropHeight", None, whole(1, 10_000_000))

    @property
    def crop(self) -> tuple[int, int, int, int] | None:
        box = (self.crop_left, self.crop_top, self.crop_width, self.crop_height)
        if any(side is None for side in box):
            return None
        return box  # type: ignore[return-value]

    def check(self, problems: FieldErrors) -> None:
        names = ("cropLeft", "cropTop", "cropWidth", "cropHeight")
        values = (self.crop_left, self.crop_top, self.crop_width, self.crop_height)
        given = [name for name, value in zip(names, values, strict=True) if value is not None]
        for name in names:
            if given and name not in given:
                problems.add(name, "is required when any crop field is given")
