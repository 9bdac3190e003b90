"""The media worker's tools (API.md "Media tools" on audio and video), one pure function each
with the pipeline's shape; `run` dispatches a tool by name for the worker runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.errors import MeshError, Reason
from mesh.outcome import Outcome
from mesh.tools.catalog import AUDIO_VIDEO, Input, params_for, tool_named
from services.media.limits import MediaLimits
from services.media.tools import clips, inspection, stills, watermark

# Tool name -> f(source, output, source_format, params, limits) -> Outcome.
TOOLS: dict[str, Callable[..., Outcome]] = {
    "convert": clips.convert,
    "extract-audio": clips.extract_audio,
    "trim": clips.trim,
    "gif": clips.gif,
    "thumbnail": stills.thumbnail,
    "poster-frame": stills.poster_frame,
    "storyboard": stills.storyboard,
    "inspect": inspection.inspect,
    "strip-metadata": clips.strip_metadata,
    "watermark": watermark.watermark,
}


def run(
    tool: str,
    sources: Sequence[Input],
    output: Path,
    fields: Mapping[str, str],
    limits: MediaLimits,
    *,
    extra: Input | None = None,
) -> Outcome:
    """Runs `tool` on `sources[0]` (and `extra`, the watermark's logo) into `output`."""
    spec = tool_named(tool)
    if not spec.families & AUDIO_VIDEO or tool not in TOOLS or len(sources) != 1:
        raise MeshError(Reason.UNSUPPORTED_PAIR, f"The media worker does not run {tool} this way.")
    params: Any = params_for(spec, fields)
    (source,) = sources
    if tool == "watermark":
        logo = extra.path if extra is not None else None
        return watermark.watermark(source.path, output, source.format, params, limits, logo=logo)
    return TOOLS[tool](source.path, output, source.format, params, limits)
