"""The media tools of API.md (`POST /api/media/<tool>`): each tool's fields, their types and
the server's defaults. The client checks parameter names against this table before sending;
values are checked by the server (every bad field in one 400)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from convertmesh.errors import InvalidRequestError


@dataclass(frozen=True)
class Param:
    name: str  # the wire name (camelCase)
    kind: type  # int, float, str or bool
    default: object = None  # the server's default, for help texts; None: no default
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def python_name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()


@dataclass(frozen=True)
class Tool:
    name: str
    summary: str
    params: tuple[Param, ...]
    many_files: bool = False  # image-to-pdf takes repeated files
    file_params: tuple[str, ...] = ()  # extra file parts (watermark's logo)


_VIDEO_OUT = ("mp4", "webm", "mov", "mp3", "m4a", "wav", "ogg", "flac")
_AUDIO_OUT = ("mp3", "m4a", "wav", "ogg", "flac")
_STILL_OUT = ("jpg", "png", "webp", "avif")
_FITS = ("cover", "contain", "inside")
_RESIZES = (
    "original",
    "website",
    "email",
    "instagram",
    "linkedin",
    "ecommerce",
    "square",
    "width",
    "height",
)
_POSITIONS = (
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

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "convert",
            "Convert audio or video to another format.",
            (
                Param("format", str, None, _VIDEO_OUT, "output format"),
                Param("compressionLevel", int, 75, help="1-100"),
                Param("resize", str, None, _RESIZES, "resize preset"),
                Param("resizeWidth", int, help="pixels"),
                Param("resizeHeight", int, help="pixels"),
            ),
        ),
        Tool(
            "extract-audio",
            "Extract the audio track.",
            (
                Param("format", str, "mp3", _AUDIO_OUT),
                Param("bitrateKbps", int, 192),
            ),
        ),
        Tool(
            "trim",
            "Cut a span out of audio or video.",
            (
                Param("start", float, 0, help="seconds"),
                Param("duration", float, 10, help="seconds"),
                Param("format", str, None, _VIDEO_OUT, "default: the input's"),
            ),
        ),
        Tool(
            "gif",
            "Make an animated GIF from a video.",
            (
                Param("start", float, 0, help="seconds"),
                Param("duration", float, 4, help="seconds"),
                Param("width", int, 480),
                Param("fps", int, 12),
            ),
        ),
        Tool(
            "thumbnail",
            "A thumbnail of an image or a video frame.",
            (
                Param("format", str, "jpg", _STILL_OUT),
                Param("width", int, 512),
                Param("height", int, 512),
                Param("fit", str, "cover", _FITS),
                Param("quality", int, 82),
                Param("timestamp", float, 1, help="seconds, for video"),
            ),
        ),
        Tool(
            "poster-frame",
            "One frame of a video as an image.",
            (
                Param("timestamp", float, 1, help="seconds"),
                Param("format", str, "jpg", _STILL_OUT),
                Param("width", int, 1280),
                Param("quality", int, 86),
            ),
        ),
        Tool(
            "storyboard",
            "A grid image of frames across a video.",
            (
                Param("frames", int, 12),
                Param("columns", int, 4),
                Param("width", int, 240, help="per tile"),
                Param("format", str, "jpg", _STILL_OUT),
                Param("quality", int, 86),
            ),
        ),
        Tool("inspect", "Describe a media file: format, size, duration, streams.", ()),
        Tool("strip-metadata", "Remove metadata (EXIF, GPS, tags).", ()),
        Tool(
            "image-to-pdf",
            "Put one or more images into one PDF.",
            (Param("pageSize", str, "auto", ("auto", "letter", "a4")),),
            many_files=True,
        ),
        Tool(
            "pdf-preview",
            "A page of a PDF as an image.",
            (
                Param("format", str, "jpg", _STILL_OUT),
                Param("page", int, 1),
                Param("width", int, 1600),
                Param("quality", int, 86),
            ),
        ),
        Tool(
            "watermark",
            "Put a text or a logo on an image or a video.",
            (
                Param("text", str),
                Param("position", str, "bottom-right", _POSITIONS),
                Param("opacity", float, 0.72),
                Param("margin", int, 32),
                Param("watermarkWidth", int, help="logo width in pixels"),
            ),
            file_params=("watermarkFile",),
        ),
        Tool(
            "transform",
            "Resize, crop, rotate, flip or re-encode an image.",
            (
                Param("format", str, "webp", ("jpg", "png", "webp", "avif", "tiff", "gif")),
                Param("width", int),
                Param("height", int),
                Param("fit", str, "cover", ("cover", "contain", "fill", "inside", "outside")),
                Param("rotate", int, help="degrees"),
                Param("flip", bool, False),
                Param("flop", bool, False),
                Param("quality", int, 86),
                Param("cropLeft", int),
                Param("cropTop", int),
                Param("cropWidth", int),
                Param("cropHeight", int),
            ),
        ),
    )
}


def tool_named(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise InvalidRequestError(
            f"There is no media tool {name!r}; the tools are: {', '.join(TOOLS)}."
        ) from None


def wire_params(tool: Tool, params: Mapping[str, object]) -> list[tuple[str, str]]:
    """Form fields for a tool's parameters, given by wire name or snake_case name; None is
    left out (the server's default)."""
    known = {p.name: p for p in tool.params} | {p.python_name: p for p in tool.params}
    unknown = [name for name in params if name not in known]
    if unknown:
        names = ", ".join(p.name for p in tool.params) or "none"
        raise InvalidRequestError(
            f"The tool {tool.name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are: {names}."
        )
    fields: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        wire = known[name].name
        fields.append(
            (wire, ("true" if value else "false") if isinstance(value, bool) else str(value))
        )
    return fields


R = TypeVar("R")


class ToolMethods(Generic[R]):
    """One method per media tool, each a call of `tool` (for the async client, `R` is an
    awaitable, so `await client.gif(...)` works the same way)."""

    tool: Callable[..., R]

    def convert_media(self, source: object, **params: Any) -> R:
        return self.tool("convert", source, **params)

    def extract_audio(self, source: object, **params: Any) -> R:
        return self.tool("extract-audio", source, **params)

    def trim(self, source: object, **params: Any) -> R:
        return self.tool("trim", source, **params)

    def gif(self, source: object, **params: Any) -> R:
        return self.tool("gif", source, **params)

    def thumbnail(self, source: object, **params: Any) -> R:
        return self.tool("thumbnail", source, **params)

    def poster_frame(self, source: object, **params: Any) -> R:
        return self.tool("poster-frame", source, **params)

    def storyboard(self, source: object, **params: Any) -> R:
        return self.tool("storyboard", source, **params)

    def inspect(self, source: object, **params: Any) -> R:
        return self.tool("inspect", source, **params)

    def strip_metadata(self, source: object, **params: Any) -> R:
        return self.tool("strip-metadata", source, **params)

    def image_to_pdf(self, source: object, **params: Any) -> R:
        return self.tool("image-to-pdf", source, **params)

    def pdf_preview(self, source: object, **params: Any) -> R:
        return self.tool("pdf-preview", source, **params)

    def watermark(self, source: object, **params: Any) -> R:
        return self.tool("watermark", source, **params)

    def transform(self, source: object, **params: Any) -> R:
        return self.tool("transform", source, **params)
