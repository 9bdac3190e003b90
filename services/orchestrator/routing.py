"""Which worker service converts (input family, output format): one table.

A pair missing from the table is refused at job creation with 415 naming the pair, so a job is
never accepted and then left hanging.
"""

from __future__ import annotations

from mesh.errors import MeshError, Reason
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, Family, outputs_of

# The worker services: each consumes `tasks.<service>` and answers on `results.<service>`.
SERVICES = ("image", "media", "archive")

IMAGE_OUTPUTS = frozenset(outputs_of(Family.IMAGE, Family.SVG, Family.PDF))
VIDEO_OUTPUTS = frozenset(outputs_of(Family.VIDEO))
AUDIO_OUTPUTS = frozenset(outputs_of(Family.AUDIO))
ARCHIVE_OUTPUTS = frozenset(outputs_of(Family.ARCHIVE))

# Input family -> {output format -> service}. Any file can be wrapped or compressed by the
# archive service; that row is added to every family below.
ROUTES: dict[Family, dict[str, str]] = {
    Family.IMAGE: dict.fromkeys(IMAGE_OUTPUTS, "image"),
    Family.SVG: dict.fromkeys(IMAGE_OUTPUTS - {"svg"}, "image"),
    Family.PDF: dict.fromkeys(IMAGE_OUTPUTS - {"svg", "pdf"}, "image"),
    Family.VIDEO: dict.fromkeys(VIDEO_OUTPUTS | AUDIO_OUTPUTS | {"gif"}, "media"),
    Family.AUDIO: dict.fromkeys(AUDIO_OUTPUTS, "media"),
    # An archive asked for a non-archive format is unpacked and each member converted by its
    # own worker (see fanout.py); the archive service runs the UNPACK and PACK stages.
    Family.ARCHIVE: dict.fromkeys(IMAGE_OUTPUTS | VIDEO_OUTPUTS | AUDIO_OUTPUTS, "archive"),
    Family.UNKNOWN: {},
}
for _family_routes in ROUTES.values():
    _family_routes.update(dict.fromkeys(ARCHIVE_OUTPUTS, "archive"))

# Animated GIF and WebP are video sources too; a still one fails in the media worker.
ANIMATABLE_IMAGE_TO_VIDEO = {("gif", out): "media" for out in VIDEO_OUTPUTS} | {
    ("webp", out): "media" for out in VIDEO_OUTPUTS
}


def resolve_output(source_format: str, requested: str) -> str:
    """The output format: the requested one, or for compress jobs the input's own format."""
    if requested:
        return requested
    if source_format in OUTPUT_FORMATS:
        return source_format
    raise MeshError(
        Reason.UNSUPPORTED_PAIR,
        f"Files in {source_format or 'this'} format cannot be compressed in their own format; "
        "choose an output format.",
        pair=f"{source_format or 'unknown'}->{source_format or 'unknown'}",
    )


def route(source_format: str, output_format: str) -> str:
    """The service for this pair, or a 415 MeshError that names the pair."""
    family = INPUT_FAMILIES.get(source_format, Family.UNKNOWN)
    service = ANIMATABLE_IMAGE_TO_VIDEO.get((source_format, output_format)) or ROUTES[family].get(
        output_format
    )
    if service is None:
        shown = source_format or "an unrecognised format"
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"Converting {shown} to {output_format} is not supported.",
            pair=f"{source_format or 'unknown'}->{output_format}",
        )
    return service


def written_by(service: str) -> frozenset[str]:
    """The output formats `service` writes itself: its routes, less the archives that the
    archive service only unpacks for other workers to convert."""
    return frozenset(
        output
        for family, row in ROUTES.items()
        for output, routed in row.items()
        if routed == service and not (family is Family.ARCHIVE and output not in ARCHIVE_OUTPUTS)
    ) | {output for (_, output), routed in ANIMATABLE_IMAGE_TO_VIDEO.items() if routed == service}


def family_of(source_format: str) -> str:
    return INPUT_FAMILIES.get(source_format, Family.UNKNOWN).value


def unpacks(source_format: str, output_format: str) -> bool:
    """True when the file is an archive whose members are converted one by one."""
    family = INPUT_FAMILIES.get(source_format, Family.UNKNOWN)
    return family is Family.ARCHIVE and output_format not in ARCHIVE_OUTPUTS
