"""Which worker service runs a media tool on an input family: one table, beside `routing`'s.

The tool catalog (`mesh.tools.catalog`) says which families each tool takes; this table says
which service owns each family. A family the tool does not take is refused at job creation
with 415, naming the tool and what it takes.
"""

from __future__ import annotations

from mesh.formats import OUTPUT_FORMATS, Family
from mesh.tools.catalog import Tool, check_family
from services.orchestrator import specs

# Input family -> the service whose worker runs the tools on it.
TOOL_SERVICES: dict[Family, str] = {
    Family.IMAGE: "image",
    Family.SVG: "image",
    Family.PDF: "image",
    Family.VIDEO: "media",
    Family.AUDIO: "media",
}
# Tools whose output format does not depend on their parameters.
FIXED_OUTPUTS = {"gif": "gif", "image-to-pdf": "pdf", "inspect": "json"}


def tool_service(tool: Tool, family: Family, source_format: str) -> str:
    """The service that runs `tool` on this input, or a 415 MeshError naming what it takes."""
    check_family(tool, family, source_format)
    return TOOL_SERVICES[family]


def expected_format(tool: Tool, params: object, source_format: str) -> str:
    """The output format the tool will write, as far as it is known before it runs (the worker
    reports the real one: a watermarked mkv becomes mp4, for instance)."""
    fixed = FIXED_OUTPUTS.get(tool.name)
    if fixed is not None:
        return fixed
    chosen = getattr(params, "format", "")
    return str(chosen) if chosen else source_format


def output_name(filename: str, output_format: str) -> str:
    """The source's name with the output's extension (`clip.mkv` -> `clip.json`)."""
    if output_format in OUTPUT_FORMATS:
        return specs.output_filename(filename, output_format)
    stem = specs.output_filename(filename, "")
    return f"{stem}.{output_format}" if output_format else stem
