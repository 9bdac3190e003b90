"""Lanes: what happens to the packets of one input stream. A copy lane remuxes them unchanged;
a video or audio lane decodes, filters and re-encodes them. Every lane shifts timestamps so the
output starts at zero, and refuses to run past the duration limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

import av
import av.container
import av.error
import av.filter
import av.stream
from av.audio.stream import AudioStream
from av.video.frame import PictureType
from av.video.stream import VideoStream

from services.media.geometry import FramePlan
from services.media.limits import MediaLimits, check_duration

Progress = Callable[[float], None]
_DRAINED = (av.error.BlockingIOError, av.error.EOFError)


@dataclass(frozen=True)
class VideoSettings:
    codec: str
    frames: FramePlan
    pix_fmt: str
    rate: Fraction
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int = 0
    fps: Fraction | None = None  # a forced output frame rate (GIF)


@dataclass(frozen=True)
class AudioSettings:
    codec: str
    sample_rate: int
    layout: str
    sample_format: str
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int = 0


@dataclass(frozen=True)
class Timing:
    """What every lane of one run shares: where the input starts, the limits, the reporter."""

    start: float
    limits: MediaLimits
    progress: Progress


class Lane:
    def __init__(self, source: av.stream.Stream, timing: Timing) -> None:
        self.source = source
        self.timing = timing
        self.time_base = source.time_base or Fraction(1, 90000)
        self.offset = round(timing.start / self.time_base)
        self.units = 0  # frames decoded or packets copied

    def _seconds(self, ticks: int) -> float:
        return float(ticks * self.time_base)

    def _passed(self, seconds: float) -> None:
        check_duration(seconds, self.timing.limits)
        self.timing.progress(seconds)
        self.units += 1

    def push(self, packet: av.Packet[Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Drains decoders, filters and encoders at the end of the input."""


class CopyLane(Lane):
    def __init__(
        self, output: av.container.OutputContainer, source: av.stream.Stream, timing: Timing
    ) -> None:
        super().__init__(source, timing)
        self.output = output
        self.target = output.add_stream_from_template(source)
        self.target.disposition = source.disposition  # the template leaves out attached_pic

    def push(self, packet: av.Packet[Any]) -> None:
        if packet.dts is not None:
            packet.dts -= self.offset
        if packet.pts is not None:
            packet.pts -= self.offset
        self._passed(self._seconds(packet.pts or 0))
        packet.stream = self.target
        self.output.mux(packet)


class VideoLane(Lane):
    """Decode, turn/scale/crop/pad (and for GIF: drop frames, map to a palette), encode."""

    def __init__(
        self,
        output: av.container.OutputContainer | None,
        source: av.stream.Stream,
        timing: Timing,
        settings: VideoSettings,
        palette: av.VideoFrame | None = None,
    ) -> None:
        super().__init__(source, timing)
        self.video = cast(VideoStream, source)
        self.video.codec_context.thread_type = "AUTO"
        self.video.codec_context.options = {"max_pixels": str(timing.limits.max_pixels)}
        self.output = output
        self.settings = settings
        self.palette = palette
        self.graph: av.filter.Graph | None = None
        self.graph_key: tuple[int, int, str] = (0, 0, "")
        self.next_pts: int | None = None
        self.target: VideoStream | None = None
        if output is not None:
            self.target = cast(VideoStream, output.add_stream(settings.codec, rate=self._rate()))
            ctx = self.target.codec_context
            ctx.width, ctx.height = settings.frames.width, settings.frames.height
            ctx.pix_fmt = settings.pix_fmt
            ctx.time_base = 1 / self._rate() if settings.fps else self.time_base
            ctx.thread_type = "AUTO"
            ctx.options = dict(settings.options)
            if settings.bit_rate:
                ctx.bit_rate = settings.bit_rate

    def _rate(self) -> Fraction:
        return self.settings.fps or self.settings.rate

    def push(self, packet: av.Packet[Any] | None) -> None:
        try:
            frames = self.video.decode(packet)
        except av.error.InvalidDataError:
            return  # a damaged packet: skip it, as FFmpeg's CLI does
        for frame in frames:
            if frame.pts is None:
                step = round(1 / (self.settings.rate * self.time_base))
                frame.pts = (self.next_pts or 0) + max(0, step - 1)
            else:
                frame.pts -= self.offset
            if self.next_pts is not None and frame.pts < self.next_pts:
                continue  # a repeated or backwards timestamp from a damaged stream
            self.next_pts = frame.pts + 1
            frame.time_base = self.time_base
            self._passed(self._seconds(frame.pts))
            self._filter(frame)

    def tail(self) -> list[tuple[str, str]]:
        """Filters after the geometry: the encoder's pixel format, unless a palette maps it."""
        return [] if self.palette is not None else [("format", self.settings.pix_fmt)]

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        head = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=self.time_base
        )
        chain = list(self.settings.frames.filters)
        if self.settings.fps:
            chain.insert(0, ("fps", str(self.settings.fps)))
        for name, args in [*chain, *self.tail()]:
            node = graph.add(name, args or None)
            head.link_to(node)
            head = node
        if self.palette is not None:
            palette_source = graph.add_buffer(
                width=self.palette.width,
                height=self.palette.height,
                format=self.palette.format,
                time_base=self.palette.time_base or Fraction(1, 100),
            )
            use = graph.add("paletteuse", "dither=sierra2_4a")
            head.link_to(use, 0, 0)
            palette_source.link_to(use, 0, 1)
            head = use
        head.link_to(graph.add("buffersink"))
        graph.configure()
        if self.palette is not None:
            self.palette.pts = 0  # valid from the first frame on
            palette_source.push(self.palette)
            palette_source.push(None)
        return graph

    def _filter(self, frame: av.VideoFrame | None) -> None:
        if frame is not None:
            key = (frame.width, frame.height, frame.format.name)
            if self.graph is None or key != self.graph_key:
                if self.graph is not None:
                    self._filter(None)  # a new size mid-stream: drain, then rebuild
                self.graph, self.graph_key = self._build_graph(frame), key
        if self.graph is None:
            return
        self.graph.vpush(frame, at=0)  # the palette source, if any, is already closed
        while True:
            try:
                self.emit(self.graph.vpull())
            except _DRAINED:
                return

    def emit(self, frame: av.VideoFrame) -> None:
        assert self.target is not None and self.output is not None
        frame.pict_type = PictureType.NONE
        self.output.mux(self.target.encode(frame))

    def flush(self) -> None:
        self.push(None)
        self._filter(None)
        if self.target is not None and self.output is not None:
            self.output.mux(self.target.encode(None))


class AudioLane(Lane):
    """Decode and encode; PyAV's encoder resamples to its format, layout, rate and frame size.

    Audio is stamped in samples: the first frame keeps its place against the video, later frames
    follow on sample by sample, so timestamp jitter in the input never opens gaps or overlaps.
    """

    def __init__(
        self,
        output: av.container.OutputContainer,
        source: av.stream.Stream,
        timing: Timing,
        settings: AudioSettings,
    ) -> None:
        super().__init__(source, timing)
        self.audio = cast(AudioStream, source)
        self.output = output
        self.first: int | None = None
        self.samples = 0
        self.sample_rate = settings.sample_rate
        self.target = cast(
            AudioStream, output.add_stream(settings.codec, rate=settings.sample_rate)
        )
        ctx = self.target.codec_context
        ctx.layout = settings.layout
        ctx.format = settings.sample_format
        ctx.options = dict(settings.options)
        if settings.bit_rate:
            ctx.bit_rate = settings.bit_rate

    def push(self, packet: av.Packet[Any] | None) -> None:
        try:
            frames: Sequence[av.AudioFrame] = self.audio.decode(packet)
        except av.error.InvalidDataError:
            return
        for frame in frames:
            rate = frame.sample_rate or 1
            if self.first is None:
                shifted = (frame.pts - self.offset) * self.time_base if frame.pts is not None else 0
                self.first = max(0, round(shifted * rate))
            frame.pts = self.first + self.samples
            frame.time_base = Fraction(1, rate)
            self.samples += frame.samples
            self.sample_rate = rate
            self._passed(frame.pts / rate)
            self.output.mux(self.target.encode(frame))

    def flush(self) -> None:
        self.push(None)
        self.output.mux(self.target.encode(None))
