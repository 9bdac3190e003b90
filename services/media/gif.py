"""GIF output: one palette per clip. A first pass runs the frames through FFmpeg's palettegen;
the second pass maps every frame onto that palette with paletteuse. Two decodes instead of one
keep memory flat (palettegen only answers at end of stream, so a one-pass graph would hold every
frame until then)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from mesh.errors import MeshError, Reason
from mesh.options import Box, Fit
from services.media.lanes import Timing, VideoLane, VideoSettings
from services.media.probe import Probe, open_input
from services.media.pump import pump

MAX_FPS = Fraction(12)
MAX_WIDTH = 480  # when the client asked for no resize
DEFAULT_BOX = Box(MAX_WIDTH, None, Fit.INSIDE)


def gif_rate(source_rate: Fraction) -> Fraction:
    return min(source_rate, MAX_FPS) if source_rate > 0 else MAX_FPS


class PaletteLane(VideoLane):
    """The first pass: frames in, one 16x16 palette frame out."""

    found: av.VideoFrame | None = None

    def tail(self) -> list[tuple[str, str]]:
        return [("palettegen", "stats_mode=full")]

    def emit(self, frame: av.VideoFrame) -> None:
        self.found = frame


def palette_for(
    source: Path, source_format: str, probe: Probe, settings: VideoSettings, timing: Timing
) -> av.VideoFrame:
    assert probe.video is not None
    with open_input(source, source_format, timing.limits) as container:
        stream = container.streams[probe.video.index]
        lane = PaletteLane(None, stream, timing, settings)
        pump(container, {stream.index: lane})
    if lane.found is None:
        raise MeshError(Reason.CORRUPT_INPUT, "The video has no decodable frames.")
    return lane.found
