"""Per-file conversion options: one frozen dataclass shared by gateway, orchestrator and workers,
converted to and from the `FileOptions` proto only at the edges, and the resize-preset table."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh.jobs.v1 import jobs_pb2

DEFAULT_COMPRESSION = 82


class Mode(enum.Enum):
    QUALITY = "quality"
    TARGET_SIZE = "target-size"


_MODE_TO_PROTO = {
    Mode.QUALITY: jobs_pb2.CONVERT_MODE_QUALITY,
    Mode.TARGET_SIZE: jobs_pb2.CONVERT_MODE_TARGET_SIZE,
}
_MODE_FROM_PROTO = {v: k for k, v in _MODE_TO_PROTO.items()}


@dataclass(frozen=True)
class ConversionOptions:
    """What the client asked for one file. `format` empty means: keep the input's format."""

    format: str = ""
    resize: str = "original"
    resize_width: int | None = None
    resize_height: int | None = None
    compression: int = DEFAULT_COMPRESSION
    auto_orient: bool = True
    mono: bool = False
    mode: Mode = Mode.QUALITY
    target_bytes: int = 0
    lossless: bool = False
    strip_metadata: bool = False

    def to_proto(self) -> jobs_pb2.FileOptions:
        message = jobs_pb2.FileOptions(
            format=self.format,
            resize=self.resize,
            compression=self.compression,
            auto_orient=self.auto_orient,
            mono=self.mono,
            mode=_MODE_TO_PROTO[self.mode],
            target_bytes=self.target_bytes,
            lossless=self.lossless,
            strip_metadata=self.strip_metadata,
        )
        if self.resize_width is not None:
            message.resize_width = self.resize_width
        if self.resize_height is not None:
            message.resize_height = self.resize_height
        return message

    @classmethod
    def from_proto(cls, message: jobs_pb2.FileOptions) -> ConversionOptions:
        return cls(
            format=message.format,
            resize=message.resize or "original",
            resize_width=message.resize_width if message.HasField("resize_width") else None,
            resize_height=message.resize_height if message.HasField("resize_height") else None,
            compression=message.compression or DEFAULT_COMPRESSION,
            auto_orient=message.auto_orient,
            mono=message.mono,
            mode=_MODE_FROM_PROTO.get(message.mode, Mode.QUALITY),
            target_bytes=message.target_bytes,
            lossless=message.lossless,
            strip_metadata=message.strip_metadata,
        )


class Fit(enum.Enum):
    """How an image meets its box."""

    NONE = "none"  # no resize
    INSIDE = "inside"  # fit inside the box, keep aspect, never upscale
    COVER = "cover"  # fill the box exactly, centre crop
    CONTAIN = "contain"  # fit inside, then pad to the box with background


@dataclass(frozen=True)
class Box:
    """A resize target. A None side is unconstrained (scale by the other, keep aspect)."""

    width: int | None
    height: int | None
    fit: Fit
    upscale: bool = False


DEFAULT_SQUARE = 1080

# Preset name -> box (API.md "Resize presets"). `square`, `width` and `height` read the
# client's resizeWidth/resizeHeight, see `box_for`.
PRESETS: dict[str, Box] = {
    "original": Box(None, None, Fit.NONE),
    "website": Box(1920, None, Fit.INSIDE),
    "email": Box(600, None, Fit.INSIDE),
    "instagram": Box(1080, 1080, Fit.COVER, upscale=True),
    "linkedin": Box(1200, 627, Fit.COVER, upscale=True),
    "ecommerce": Box(2000, 2000, Fit.CONTAIN, upscale=False),
    "square": Box(DEFAULT_SQUARE, DEFAULT_SQUARE, Fit.COVER, upscale=True),
    "width": Box(None, None, Fit.INSIDE, upscale=True),
    "height": Box(None, None, Fit.INSIDE, upscale=True),
}


def box_for(options: ConversionOptions) -> Box:
    """The box for a file's resize preset, with the client's width/height applied."""
    preset = PRESETS[options.resize]
    if options.resize == "square":
        side = options.resize_width or options.resize_height or DEFAULT_SQUARE
        return Box(side, side, Fit.COVER, upscale=True)
    if options.resize == "width":
        return Box(options.resize_width, None, Fit.INSIDE, upscale=True)
    if options.resize == "height":
        return Box(None, options.resize_height, Fit.INSIDE, upscale=True)
    return preset
