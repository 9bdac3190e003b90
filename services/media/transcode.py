"""One pass from input to output file: open both, wire a lane per stream, pump, close."""

from __future__ import annotations

from pathlib import Path

import av

from services.media.lanes import AudioLane, CopyLane, Lane, Progress, VideoLane
from services.media.limits import MediaLimits
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
    limits: MediaLimits,
    progress: Progress,
    palette: av.VideoFrame | None = None,
) -> None:
    with (
        open_input(source, source_format, limits) as container,
        av.open(
            str(output),
            "w",
            format=plan.target.muxer,
            container_options=plan.target.muxer_options,
        ) as out,
    ):
        if plan.keep_metadata:
            out.metadata.update(container.metadata)
            out.set_chapters(container.chapters())
        lanes: dict[int, Lane] = {}
        start = probe.start_time
        if probe.video is not None and (plan.copy_video or plan.video is not None):
            stream = container.streams[probe.video.index]
            if plan.video is None:
                lanes[stream.index] = CopyLane(out, stream, start, limits, progress)
            else:
                lanes[stream.index] = VideoLane(
                    out, stream, start, limits, progress, plan.video, palette
                )
            progress = _silent  # the video lane reports; the audio lane follows it
        if probe.audio is not None and (plan.copy_audio or plan.audio is not None):
            stream = container.streams[probe.audio.index]
            if plan.audio is None:
                lanes[stream.index] = CopyLane(out, stream, start, limits, progress)
            else:
                lanes[stream.index] = AudioLane(out, stream, start, limits, progress, plan.audio)
        for index in plan.pictures:
            lanes[index] = CopyLane(out, container.streams[index], start, limits, _silent)
        pump(container, lanes)
