"""What every media tool does around its own work: probe with the limits and clean up a
failed output (progress, pair checks and measuring the output are the pipeline's own)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import av.error

from mesh.errors import MeshError, Reason
from services.media import pipeline
from services.media.limits import MediaLimits
from services.media.probe import Probe, open_input, probe


def probed(source: Path, source_format: str, limits: MediaLimits, orient: bool = False) -> Probe:
    """The header facts, checked against the limits; with `orient`, the display rotation too
    (read from the first decoded frame: FFmpeg attaches it to frames, not streams)."""
    with open_input(source, source_format, limits) as container:
        found = probe(container, limits)
    return pipeline.orient(source, source_format, found, limits) if orient else found


@contextlib.contextmanager
def safely(output: Path) -> Iterator[None]:
    """Removes a partial output on failure; a decoder's error becomes CORRUPT_INPUT."""
    try:
        yield
    except MeshError:
        output.unlink(missing_ok=True)
        raise
    except av.error.FFmpegError as error:
        output.unlink(missing_ok=True)
        raise MeshError(
            Reason.CORRUPT_INPUT, "The media could not be decoded; it may be damaged."
        ) from error
