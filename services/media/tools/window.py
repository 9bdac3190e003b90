"""A time window of the input: seek to the keyframe before its start, decode from there, keep
only what falls inside, and stop reading at its end.

Lanes run with `Timing.start` at the window's start, so every timestamp they see is relative to
it: video frames before zero (decoded from the keyframe) or past the end are dropped before the
filter graph; audio and copied packets are chosen whole, by their own timestamps (an audio
packet lasts some 20-90 ms, well inside the tools' +-0.1 s).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import av.error

from mesh.errors import MeshError, Reason
from services.media.gif import PaletteLane
from services.media.lanes import Lane, Timing, VideoLane
from services.media.plan import Plan
from services.media.probe import Probe
from services.media.transcode import transcode

# B-frames arrive before earlier-shown frames: keep demuxing this long past the end.
REORDER_SECONDS = 1.0
# Seek this far before the start: an estimated (bitrate-based) seek may overshoot a little.
SEEK_MARGIN_SECONDS = 1.0
KEYFRAME_INDEXED = frozenset({"mov", "matroska", "avi"})
_SEEKABLE_AUDIO = KEYFRAME_INDEXED | {"mp3", "flac", "wav", "ogg", "aac"}


@dataclass(frozen=True)
class Window:
    start: float  # seconds from the input's first timestamp
    duration: float

    def inside(self, seconds: float) -> bool:
        return 0 <= seconds < self.duration


def window_for(probe: Probe, start: float, duration: float, field: str = "start") -> Window:
    """The window, refused when it starts past the end of the media."""
    if probe.duration is not None and start >= probe.duration:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"The field '{field}' is past the end of the media ({probe.duration:.2f} s).",
            fields={field: f"must be less than the media's duration, {probe.duration:.2f} s"},
        )
    if probe.duration is not None:
        duration = min(duration, probe.duration - start)
    return Window(start, duration)


def _frame_seconds(frame: av.VideoFrame) -> float:
    return float((frame.pts or 0) * (frame.time_base or Fraction(1, 90000)))


class WindowVideoLane(VideoLane):
    def __init__(self, *args: Any, window: Window, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = window

    def _filter(self, frame: av.VideoFrame | None) -> None:
        if frame is None or self.window.inside(_frame_seconds(frame)):
            super()._filter(frame)


class WindowPaletteLane(WindowVideoLane, PaletteLane):
    """The GIF palette pass over the window only."""


def _seek(container: av.container.InputContainer, lanes: Mapping[int, Lane]) -> None:
    """Jumps towards the window's start where the demuxer can land before a keyframe: MPEG-TS,
    MPEG-PS and Ogg seek by bisection and may land after one, which would lose frames, so they
    are read from the start (frames before the window are decoded and dropped)."""
    video = next((lane for lane in lanes.values() if isinstance(lane, VideoLane)), None)
    lane = video or next(iter(lanes.values()))
    demuxer = container.format.name.split(",")[0]
    if demuxer not in (KEYFRAME_INDEXED if video else _SEEKABLE_AUDIO):
        return
    ticks = lane.offset - round(SEEK_MARGIN_SECONDS / lane.time_base)
    if ticks <= 0:
        return
    with contextlib.suppress(av.error.FFmpegError):  # unindexed: decode on from here
        container.seek(ticks, stream=lane.source, backward=True)


def pump_window(
    container: av.container.InputContainer, lanes: Mapping[int, Lane], window: Window
) -> None:
    """`pump` for a window: seek, feed what can fall inside, stop once every lane is past it."""
    _seek(container, lanes)
    open_lanes = set(lanes)
    for packet in container.demux([container.streams[index] for index in lanes]):
        index = packet.stream.index
        if index not in open_lanes or (packet.size == 0 and packet.dts is None):
            continue
        lane = lanes[index]
        ticks = packet.pts if packet.pts is not None else packet.dts
        seconds = float((ticks - lane.offset) * lane.time_base) if ticks is not None else 0.0
        if isinstance(lane, VideoLane):
            if seconds >= window.duration + REORDER_SECONDS:
                open_lanes.discard(index)
                if not open_lanes:
                    break
                continue
            lane.push(packet)
        elif seconds >= window.duration:
            open_lanes.discard(index)
            if not open_lanes:
                break
        elif seconds >= 0:
            lane.push(packet)
    for lane in lanes.values():
        lane.flush()
    if not any(lane.units for lane in lanes.values()):
        raise MeshError(Reason.CORRUPT_INPUT, "The media has no decodable frames in that range.")


def transcode_window(
    source: Path,
    source_format: str,
    probe: Probe,
    plan: Plan,
    output: Path,
    *,
    timing: Timing,
    span: Window,
    palette: av.VideoFrame | None = None,
) -> None:
    """`transcode` of the window only; `timing.start` is the window's start in the input."""
    transcode(
        source,
        source_format,
        probe,
        plan,
        output,
        timing=timing,
        palette=palette,
        video_lane=functools.partial(WindowVideoLane, window=span),
        run=functools.partial(pump_window, window=span),
    )
