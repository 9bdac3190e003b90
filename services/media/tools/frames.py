"""Still frames of a video at chosen times, as upright Pillow images at their display size.

A frame is found by seeking to the keyframe before the time (where the demuxer has a keyframe
index, see `window`) and decoding forward to the first frame at or after it; past the last
frame, the last one is taken. Times are seconds from the video's first timestamp. Each frame is
handed out as soon as it is decoded, so callers shrink it before the next one is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import av
import av.container
import av.error
from av.video.stream import VideoStream
from PIL import Image

from mesh.errors import MeshError, Reason
from services.media.limits import MediaLimits, check_duration
from services.media.probe import Probe, open_input
from services.media.tools.window import KEYFRAME_INDEXED

_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
_TURNS[-90] = _TURNS[270] = Image.Transpose.ROTATE_270
_TURNS[-180] = Image.Transpose.ROTATE_180


def display_size(found: Probe) -> tuple[int, int]:
    """The stored size with the sample aspect applied (rotation is applied per frame)."""
    assert found.video is not None
    info = found.video
    aspect = info.sample_aspect if info.sample_aspect > 0 else 1
    return max(1, round(info.width * float(aspect))), info.height


def upright(frame: av.VideoFrame, width: int, height: int) -> Image.Image:
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    turn = _TURNS.get(round(frame.rotation or 0))
    return image.transpose(turn) if turn is not None else image


def duration_of(source: Path, source_format: str, found: Probe, limits: MediaLimits) -> float:
    """The declared duration, or (raw streams declare none) the last video packet's end,
    read by demuxing alone."""
    if found.duration:
        return found.duration
    assert found.video is not None
    end = 0.0
    packets = 0
    with open_input(source, source_format, limits) as container:
        stream = container.streams[found.video.index]
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            packets += packet.size > 0
    seconds = end - found.start_time if end > 0 else packets / float(found.video.rate or 25)
    check_duration(seconds, limits)
    return seconds


def frames_at(
    source: Path, source_format: str, found: Probe, times: Sequence[float], limits: MediaLimits
) -> Iterator[Image.Image]:
    """One upright image per time in `times` (ascending)."""
    if found.video is None:
        raise MeshError(Reason.UNSUPPORTED_PAIR, "The input has no video to take a frame from.")
    width, height = display_size(found)
    with open_input(source, source_format, limits) as container:
        stream = cast(VideoStream, container.streams[found.video.index])
        stream.codec_context.options = {"max_pixels": str(limits.max_pixels)}
        stream.codec_context.thread_type = "AUTO"
        seekable = container.format.name.split(",")[0] in KEYFRAME_INDEXED
        frames = _decoded(container, stream)
        last: av.VideoFrame | None = None
        for seconds in times:
            wanted = found.start_time + seconds
            if seekable and stream.time_base is not None:
                _seek(container, stream, wanted)
                frames = _decoded(container, stream)
            if last is None or last.time is None or last.time < wanted:
                for frame in frames:
                    last = frame
                    if frame.time is None or frame.time >= wanted - _half_frame(found):
                        break
            if last is None:
                raise MeshError(Reason.CORRUPT_INPUT, "The video has no decodable frames.")
            yield upright(last, width, height)


def _half_frame(found: Probe) -> float:
    assert found.video is not None
    return 0.5 / float(found.video.rate or 25)


def _seek(container: av.container.InputContainer, stream: VideoStream, seconds: float) -> None:
    assert stream.time_base is not None
    with contextlib.suppress(av.error.FFmpegError):  # unindexed: decode on from here
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True)


def _decoded(
    container: av.container.InputContainer, stream: VideoStream
) -> Iterator[av.VideoFrame]:
    for packet in container.demux(stream):
        try:
            yield from stream.decode(packet)
        except av.error.InvalidDataError:
            continue  # a damaged packet: skip it, as FFmpeg's CLI does
