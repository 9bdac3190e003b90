"""The media tools (API.md "Media tools"): each tool's parameters, the input families it
takes, and how many files. One table, read by the gateway (routes and forms), the orchestrator
(which routes each family to the worker that owns it) and the workers (dispatch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.errors import MeshError, Reason
from mesh.fields import parse
from mesh.formats import Family
from mesh.tools import params as p

STILLS = frozenset({Family.IMAGE, Family.SVG, Family.PDF})
AUDIO_VIDEO = frozenset({Family.VIDEO, Family.AUDIO})
_VIDEO = frozenset({Family.VIDEO})


@dataclass(frozen=True)
class Tool:
    name: str
    params: type
    families: frozenset[Family]  # the input families it takes
    max_files: int = 1  # the sources; image-to-pdf takes many
    extra_file: str | None = None  # a second, named file (watermark's logo)
    summary: str = ""


@dataclass(frozen=True)
class Input:
    """One file handed to a tool: a local path and the format sniffed from its bytes."""

    path: Path
    format: str


MAX_PDF_IMAGES = 100

TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "convert",
            p.MediaConvertParams,
            AUDIO_VIDEO,
            summary="Convert audio or video to another format",
        ),
        Tool("extract-audio", p.ExtractAudioParams, AUDIO_VIDEO, summary="Extract the audio track"),
        Tool("trim", p.TrimParams, AUDIO_VIDEO, summary="Cut a span out of audio or video"),
        Tool("gif", p.GifParams, _VIDEO, summary="An animated GIF from a video"),
        Tool(
            "thumbnail",
            p.ThumbnailParams,
            STILLS | _VIDEO,
            summary="A thumbnail of an image, PDF or video frame",
        ),
        Tool(
            "poster-frame", p.PosterFrameParams, _VIDEO, summary="One frame of a video as an image"
        ),
        Tool(
            "storyboard",
            p.StoryboardParams,
            _VIDEO,
            summary="A grid image of frames across a video",
        ),
        Tool(
            "inspect",
            p.InspectParams,
            AUDIO_VIDEO,
            summary="Describe a media file: format, size, duration, streams",
        ),
        Tool(
            "strip-metadata",
            p.StripMetadataParams,
            AUDIO_VIDEO | {Family.IMAGE},
            summary="Remove metadata (EXIF, GPS, tags), keeping the pixels and sound",
        ),
        Tool(
            "image-to-pdf",
            p.ImageToPdfParams,
            frozenset({Family.IMAGE, Family.SVG}),
            max_files=MAX_PDF_IMAGES,
            summary="One or more images as pages of one PDF",
        ),
        Tool(
            "pdf-preview",
            p.PdfPreviewParams,
            frozenset({Family.PDF}),
            summary="A page of a PDF as an image",
        ),
        Tool(
            "watermark",
            p.WatermarkParams,
            frozenset({Family.IMAGE, Family.VIDEO}),
            extra_file="watermarkFile",
            summary="Lay a text or a logo over an image or a video",
        ),
        Tool(
            "transform",
            p.TransformParams,
            STILLS,
            summary="Resize, crop, rotate, flip or re-encode an image",
        ),
    )
}


def tool_named(name: str) -> Tool:
    tool = TOOLS.get(name)
    if tool is None:
        raise MeshError(
            Reason.NOT_FOUND,
            f"There is no media tool named '{name}'; the tools are {', '.join(TOOLS)}.",
        )
    return tool


def check_family(tool: Tool, family: Family, source_format: str = "") -> None:
    """Refuses (UNSUPPORTED_PAIR) an input of a family the tool does not take."""
    if family not in tool.families:
        accepted = sorted(f.value for f in tool.families)
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"The {tool.name} tool does not take {source_format or family.value} input; it takes "
            f"{', '.join(accepted)} files.",
            tool=tool.name,
            family=family.value,
        )


def params_for(tool: Tool, values: Mapping[str, object]) -> Any:
    """The tool's parameter dataclass from API-named values (form, JSON or a task's map)."""
    return parse(tool.params, values)
