"""One pass from input to output file: open both, wire a lane per stream, pump, close.

The media tools pass their own video lane (a watermark overlay, a time window) and their own
pump (one that seeks and stops at the window's end); conversions use the defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import av
import av.container

from services.media.lame import LameLane
from services.media.lanes import AudioLane, CopyLane, Lane, Timing, VideoLane
from services.media.plan import Plan
from services.media.probe import Probe, open_input
from services.media.pump import pump


def _silent(_: float) -> None:
    pass


def transcode(
    source: Path,
    source_format: str,
    probe: Probe,
    plan: Plan,
    output: Path,
    *,
    timing: Timing,
    palette: av.VideoFrame | None = None,
    video_lane: Callable[..., Lane] = VideoLane,
    run: Callable[[av.container.InputContainer, Mapping[int, Lane]], None] = pump,
) -> None:
    with (
        open_input(source, source_format, timing.limits) as container,
        av.open(
            str(output), "w", format=plan.target.muxer, container_options=plan.target.muxer_options
        ) as out,
    ):
        if plan.keep_metadata:
            out.metadata.update(container.metadata)
            out.set_chapters(container.chapters())
        lanes: dict[int, Lane] = {}
        if probe.video is not None and (plan.copy_video or plan.video is not None):
            stream = container.streams[probe.video.index]
            if plan.video is None:
                lanes[stream.index] = CopyLane(out, stream, timing)
            else:
                lanes[stream.index] = video_lane(out, stream, timing, plan.video, palette)
            # The video lane reports progress; the audio lane runs alongside it.
            timing = dataclasses.replace(timing, progress=_silent)
        if probe.audio is not None and (plan.copy_audio or plan.audio is not None):
            stream = container.streams[probe.audio.index]
            if plan.audio is None:
                lanes[stream.index] = CopyLane(out, stream, timing)
            elif plan.audio.codec == "libmp3lame":
                lanes[stream.index] = LameLane(out, stream, timing, plan.audio)
            else:
                lanes[stream.index] = AudioLane(out, stream, timing, plan.audio)
        pictures = dataclasses.replace(timing, progress=_silent)
        for index in plan.pictures:
            lanes[index] = CopyLane(out, container.streams[index], pictures)
        run(container, lanes)
