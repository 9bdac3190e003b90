"""The image worker's tools (API.md "Media tools" on images, SVG and PDF), one pure function
each with the pipeline's shape; `run` dispatches a tool by name for the worker runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.errors import MeshError, Reason
from mesh.outcome import Outcome
from mesh.tools.catalog import STILLS, Input, params_for, tool_named
from services.image.limits import ImageLimits
from services.image.tools import metadata, pdfs, pictures, watermark

# Tool name -> f(source, output, source_format, params, limits) -> Outcome; image-to-pdf and
# watermark take their extra files in `run`.
TOOLS: dict[str, Callable[..., Outcome]] = {
    "thumbnail": pictures.thumbnail,
    "transform": pictures.transform,
    "strip-metadata": metadata.strip_metadata,
    "pdf-preview": pdfs.pdf_preview,
    "watermark": watermark.watermark,
    "image-to-pdf": pdfs.image_to_pdf,
}


def run(
    tool: str,
    sources: Sequence[Input],
    output: Path,
    fields: Mapping[str, str],
    limits: ImageLimits,
    *,
    extra: Input | None = None,
) -> Outcome:
    """Runs `tool` on `sources` (several for image-to-pdf) and `extra` (the watermark's logo)."""
    spec = tool_named(tool)
    if not spec.families & STILLS or tool not in TOOLS or not sources:
        raise MeshError(Reason.UNSUPPORTED_PAIR, f"The image worker does not run {tool}.")
    if len(sources) > spec.max_files:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"{tool} takes at most {spec.max_files} files.",
            fields={"files": f"at most {spec.max_files}"},
        )
    params: Any = params_for(spec, fields)
    if tool == "image-to-pdf":
        return pdfs.image_to_pdf([(s.path, s.format) for s in sources], output, params, limits)
    (source,) = sources
    if tool == "watermark":
        logo = (extra.path, extra.format) if extra is not None else None
        return watermark.watermark(source.path, output, source.format, params, limits, logo=logo)
    return TOOLS[tool](source.path, output, source.format, params, limits)
