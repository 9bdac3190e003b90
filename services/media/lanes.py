"""Lanes: what happens to the packets of one input stream. A copy lane remuxes them unchanged;
a video or audio lane decodes, filters and re-encodes them. Every lane shifts timestamps so the
output starts at zero and refuses to run past the duration limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.container
import av.error
import av.filter
import av.stream

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


class Lane:
    def __init__(
        self, source: av.stream.Stream, start: float, limits: MediaLimits, progress: Progress
    ) -> None:
        self.source = source
        self.time_base = source.time_base or Fraction(1, 90000)
        self.offset = round(start / self.time_base)
        self.limits = limits
        self.progress = progress
        self.units = 0  # frames decoded or packets copied
        self.errors = 0

    def _seconds(self, ticks: int) -> float:
        return float(ticks * self.time_base)

    def push(self, packet: av.Packet) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Drains decoders, filters and encoders at the end of the input."""


class CopyLane(Lane):
    def __init__(
        self,
        output: av.container.OutputContainer,
        source: av.stream.Stream,
        start: float,
        limits: MediaLimits,
        progress: Progress,
    ) -> None:
        super().__init__(source, start, limits, progress)
        self.output = output
        self.target = output.add_stream_from_template(source)

    def push(self, packet: av.Packet) -> None:
        if packet.size == 0:
            return
        if packet.pts is not None:
            packet.pts -= self.offset
            check_duration(self._seconds(packet.pts), self.limits)
            self.progress(self._seconds(packet.pts))
        if packet.dts is not None:
            packet.dts -= self.offset
        packet.stream = self.target
        self.output.mux(packet)
        self.units += 1


class DecodeLane(Lane):
    """Decodes packets to frames with timestamps from zero, then hands them to `consume`."""

    def __init__(
        self, source: av.stream.Stream, start: float, limits: MediaLimits, progress: Progress
    ) -> None:
        super().__init__(source, start, limits, progress)
        source.codec_context.thread_type = "AUTO"
        self.next_pts: int | None = None

    def push(self, packet: av.Packet | None) -> None:
        try:
            frames = self.source.decode(packet)
        except av.error.InvalidDataError:
            self.errors += 1  # a damaged packet: skip it like FFmpeg's CLI does
            return
        for frame in frames:
            if not self._stamp(frame):
                continue
            seconds = self._seconds(frame.pts)
            check_duration(seconds, self.limits)
            self.progress(seconds)
            self.units += 1
            self.consume(frame)

    def _stamp(self, frame: av.VideoFrame | av.AudioFrame) -> bool:
        """Sets the frame's output timestamp; False drops the frame."""
        raise NotImplementedError

    def consume(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        self.push(None)


class VideoLane(DecodeLane):
    def __init__(
        self,
        output: av.container.OutputContainer | None,
        source: av.stream.Stream,
        start: float,
        limits: MediaLimits,
        progress: Progress,
        settings: VideoSettings,
        palette: av.VideoFrame | None = None,
    ) -> None:
        super().__init__(source, start, limits, progress)
        source.codec_context.options = {"max_pixels": str(limits.max_pixels)}
        self.output = output
        self.settings = settings
        self.palette = palette
        self.graph: av.filter.Graph | None = None
        self.graph_key: tuple[int, int, str] = (0, 0, "")
        self.target: av.stream.Stream | None = None
        if output is not None:
            self.target = self._add_encoder(output, settings)

    def _add_encoder(
        self, output: av.container.OutputContainer, settings: VideoSettings
    ) -> av.stream.Stream:
        stream = output.add_stream(settings.codec, rate=settings.fps or settings.rate)
        ctx = stream.codec_context
        ctx.width = settings.frames.width
        ctx.height = settings.frames.height
        ctx.pix_fmt = settings.pix_fmt
        ctx.time_base = Fraction(1) / settings.fps if settings.fps else self.time_base
        ctx.thread_type = "AUTO"
        ctx.options = dict(settings.options)
        if settings.bit_rate:
            ctx.bit_rate = settings.bit_rate
        return stream

    def _stamp(self, frame: av.VideoFrame | av.AudioFrame) -> bool:
        if frame.pts is None:
            step = round(1 / (self.settings.rate * self.time_base)) if self.settings.rate else 1
            frame.pts = (self.next_pts or 0) + max(0, step - 1)
        else:
            frame.pts -= self.offset
        frame.time_base = self.time_base
        if self.next_pts is not None and frame.pts < self.next_pts:
            return False  # a repeated or backwards timestamp from a damaged stream
        self.next_pts = frame.pts + 1
        return True

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        head = graph.add_buffer(
            width=frame.width,
            height=frame.height,
            format=frame.format.name,
            time_base=self.time_base,
        )
        chain = list(self.settings.frames.filters)
        if self.settings.fps:
            chain.insert(0, ("fps", str(self.settings.fps)))
        chain.extend(self.tail())
        for name, args in chain:
            node = graph.add(name, args or None)
            head.link_to(node)
            head = node
        if self.palette is not None:
            palette_source = graph.add_buffer(
                width=self.palette.width,
                height=self.palette.height,
                format=self.palette.format.name,
                time_base=self.palette.time_base or Fraction(1, 100),
            )
            use = graph.add("paletteuse", "dither=sierra2_4a")
            head.link_to(use, 0, 0)
            palette_source.link_to(use, 0, 1)
            head = use
        sink = graph.add("buffersink")
        head.link_to(sink)
        graph.configure()
        if self.palette is not None:
            self.palette.pts = 0  # valid from the first frame on
            palette_source.push(self.palette)
            palette_source.push(None)
        return graph

    def tail(self) -> list[tuple[str, str]]:
        """Filters after the geometry: the encoder's pixel format, unless a palette maps it."""
        return [] if self.palette is not None else [("format", self.settings.pix_fmt)]

    def consume(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        assert isinstance(frame, av.VideoFrame)
        key = (frame.width, frame.height, frame.format.name)
        if self.graph is None or key != self.graph_key:
            if self.graph is not None:
                self._drain(None)
            self.graph, self.graph_key = self._build_graph(frame), key
        self._drain(frame)

    def _drain(self, frame: av.VideoFrame | None) -> None:
        assert self.graph is not None
        self.graph.vpush(frame, at=0)  # the palette source, if any, is already closed
        while True:
            try:
                filtered = self.graph.vpull()
            except _DRAINED:
                return
            self.emit(filtered)

    def emit(self, frame: av.VideoFrame) -> None:
        assert self.target is not None and self.output is not None
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.target.encode(frame):
            self.output.mux(packet)

    def flush(self) -> None:
        super().flush()
        if self.graph is not None:
            self._drain(None)
        if self.target is not None and self.output is not None:
            for packet in self.target.encode(None):
                self.output.mux(packet)


class AudioLane(DecodeLane):
    def __init__(
        self,
        output: av.container.OutputContainer,
        source: av.stream.Stream,
        start: float,
        limits: MediaLimits,
        progress: Progress,
        settings: AudioSettings,
    ) -> None:
        super().__init__(source, start, limits, progress)
        self.samples = 0
        self.sample_rate = settings.sample_rate
        self.output = output
        stream = output.add_stream(settings.codec, rate=settings.sample_rate)
        ctx = stream.codec_context
        ctx.layout = settings.layout
        ctx.format = settings.sample_format
        ctx.options = dict(settings.options)
        if settings.bit_rate:
            ctx.bit_rate = settings.bit_rate
        self.target = stream

    def _stamp(self, frame: av.VideoFrame | av.AudioFrame) -> bool:
        # Audio is stamped in samples. The first frame keeps its place against the video;
        # later frames follow on sample by sample, so timestamp jitter in the input never
        # opens gaps or overlaps.
        assert isinstance(frame, av.AudioFrame)
        rate = frame.sample_rate or 1
        if self.next_pts is None:
            first = (frame.pts - self.offset) * self.time_base if frame.pts is not None else 0
            self.next_pts = max(0, round(first * rate))
        frame.pts = self.next_pts + self.samples
        frame.time_base = Fraction(1, rate)
        self.samples += frame.samples
        self.sample_rate = rate
        return True

    def _seconds(self, ticks: int) -> float:
        return ticks / self.sample_rate

    def consume(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        for packet in self.target.encode(frame):
            self.output.mux(packet)

    def flush(self) -> None:
        super().flush()
        for packet in self.target.encode(None):
            self.output.mux(packet)
