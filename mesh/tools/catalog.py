"""The media tools (API.md "Media tools"): each tool's parameters, which worker serves it for
which input family, and how many files it takes. One table, read by the gateway (routes and
forms), the orchestrator (routing) and the workers (dispatch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.errors import MeshError, Reason
from mesh.formats import Family
from mesh.tools import params as p
from mesh.tools.fields import parse

IMAGE = "image"
MEDIA = "media"
_STILLS = {Family.IMAGE: IMAGE, Family.SVG: IMAGE, Family.PDF: IMAGE}
_AV = {Family.VIDEO: MEDIA, Family.AUDIO: MEDIA}


@dataclass(frozen=True)
class Tool:
    name: str
    params: type
    services: Mapping[Family, str]  # input family -> the worker service that runs it
    max_files: int = 1  # the sources; image-to-pdf takes many
    extra_file: str | None = None  # a second, named file (watermark's logo)


@dataclass(frozen=True)
class Input:
    """One file handed to a tool: a local path and the format sniffed from its bytes."""

    path: Path
    format: str


MAX_PDF_IMAGES = 100

TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("convert", p.MediaConvertParams, _AV),
        Tool("extract-audio", p.ExtractAudioParams, _AV),
        Tool("trim", p.TrimParams, _AV),
        Tool("gif", p.GifParams, {Family.VIDEO: MEDIA}),
        Tool("thumbnail", p.ThumbnailParams, {**_STILLS, Family.VIDEO: MEDIA}),
        Tool("poster-frame", p.PosterFrameParams, {Family.VIDEO: MEDIA}),
        Tool("storyboard", p.StoryboardParams, {Family.VIDEO: MEDIA}),
        Tool("inspect", p.InspectParams, _AV),
        Tool("strip-metadata", p.StripMetadataParams, {Family.IMAGE: IMAGE, **_AV}),
        Tool(
            "image-to-pdf",
            p.ImageToPdfParams,
            {Family.IMAGE: IMAGE, Family.SVG: IMAGE},
            max_files=MAX_PDF_IMAGES,
        ),
        Tool("pdf-preview", p.PdfPreviewParams, {Family.PDF: IMAGE}),
        Tool(
            "watermark",
            p.WatermarkParams,
            {Family.IMAGE: IMAGE, Family.VIDEO: MEDIA},
            extra_file="watermarkFile",
        ),
        Tool("transform", p.TransformParams, _STILLS),
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


def service_for(tool: Tool, family: Family, source_format: str = "") -> str:
    """The worker service that runs `tool` on an input of `family`, or UNSUPPORTED_PAIR."""
    service = tool.services.get(family)
    if service is None:
        accepted = sorted({f.value for f in tool.services})
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"The {tool.name} tool does not take {source_format or family.value} input; it takes "
            f"{', '.join(accepted)} files.",
            tool=tool.name,
            family=family.value,
        )
    return service


def params_for(tool: Tool, values: Mapping[str, object]) -> Any:
    """The tool's parameter dataclass from API-named values (form, JSON or a task's map)."""
    return parse(tool.params, values)
