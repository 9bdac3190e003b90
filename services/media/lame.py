"""MP3 audio through lameenc (LAME 3.100) rather than the libmp3lame inside PyAV's wheel.

The wheel's LAME measured 2.9x the CPU of the ffmpeg CLI's on the same wav with the same
settings (`bench.media`), all of it inside the encoder; lameenc's build, given the same
settings (VBR new/mtrh at the same -V, or CBR, LAME's default algorithm quality 3), writes
the same stream at about 0.7x. PyAV still decodes, resamples to packed s16 and muxes: the
output stream is a libmp3lame stream whose encoder is opened but never fed, so the mp3 muxer
gets the stream's parameters and LAME's encoder delay for its Xing/LAME header, and ID3 tags
and cover art go through it as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any, cast

import av
import av.container
import av.error
import av.stream
import lameenc
from av.audio.stream import AudioStream

from services.media.lanes import AudioSettings, Lane, Timing

FF_QP2LAMBDA = 118  # ffmpeg's global_quality unit: -q:a N is global_quality N * 118
LAME_QUALITY = 3  # LAME's own default algorithm quality, which ffmpeg leaves in place
_VBR_MTRH = 4  # LAME's vbr_mtrh, ffmpeg's VBR mode
_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def frame_length(header: bytes) -> tuple[int, int] | None:
    """(bytes, samples) of the MPEG audio layer III frame whose 4-byte header this is."""
    word = int.from_bytes(header[:4], "big")
    if word >> 21 != 0x7FF or (word >> 17) & 3 != 1:
        return None
    version = (word >> 19) & 3
    bitrate_index, rate_index = (word >> 12) & 15, (word >> 10) & 3
    if version == 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    padding = (word >> 9) & 1
    mpeg1 = version == 3
    kbps = _BITRATES[1 if mpeg1 else 2][bitrate_index]
    rate = _RATES[version][rate_index]
    if mpeg1:
        return 144_000 * kbps // rate + padding, 1152
    return 72_000 * kbps // rate + padding, 576


def split_frames(buffer: bytearray) -> Iterator[tuple[bytes, int]]:
    """Takes whole frames (bytes, samples) off the front of `buffer`; a partial one stays."""
    while len(buffer) >= 4:
        found = frame_length(bytes(buffer[:4]))
        if found is None:
            raise RuntimeError("LAME wrote something that is not an MP3 frame")
        size, samples = found
        if len(buffer) < size:
            return
        frame = bytes(buffer[:size])
        del buffer[:size]
        yield frame, samples


def encoder_for(settings: AudioSettings, channels: int) -> lameenc.Encoder:
    encoder = lameenc.Encoder()
    encoder.silence()
    encoder.set_channels(channels)
    encoder.set_in_sample_rate(settings.sample_rate)
    encoder.set_out_sample_rate(settings.sample_rate)
    encoder.set_quality(LAME_QUALITY)
    if "global_quality" in settings.options:
        encoder.set_vbr(_VBR_MTRH)
        encoder.set_vbr_quality(int(settings.options["global_quality"]) // FF_QP2LAMBDA)
    else:
        encoder.set_bit_rate(max(settings.bit_rate // 1000, 8))
    return encoder


class LameLane(Lane):
    """Decode with PyAV, encode with lameenc, mux the frames as packets of a libmp3lame stream.

    Timestamps as in `AudioLane`: the first frame keeps its place, later ones follow sample by
    sample.
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
        self.rate = settings.sample_rate
        self.channels = 1 if settings.layout == "mono" else 2
        self.target = cast(AudioStream, output.add_stream(settings.codec, rate=self.rate))
        ctx = self.target.codec_context
        ctx.layout = settings.layout
        ctx.format = settings.sample_format
        ctx.options = dict(settings.options)
        if settings.bit_rate:
            ctx.bit_rate = settings.bit_rate
        self.resampler = av.AudioResampler(format="s16", layout=settings.layout, rate=self.rate)
        self.encoder = encoder_for(settings, self.channels)
        self.pending = bytearray()
        self.first: int | None = None
        self.samples_in = 0
        self.samples_out = 0

    def push(self, packet: av.Packet[Any] | None) -> None:
        try:
            frames: Sequence[av.AudioFrame] = self.audio.decode(packet)
        except av.error.InvalidDataError:
            return
        for frame in frames:
            rate = frame.sample_rate or 1
            if self.first is None:
                shifted = (frame.pts - self.offset) * self.time_base if frame.pts is not None else 0
                self.first = max(0, round(shifted * self.rate))
            self._passed(self.samples_in / rate + self.first / self.rate)
            self.samples_in += frame.samples
            frame.pts = None  # the resampler restamps; the packets are stamped below
            self._encode(self.resampler.resample(frame))

    def _encode(self, frames: Sequence[av.AudioFrame]) -> None:
        for frame in frames:
            size = frame.samples * self.channels * 2
            self.pending += self.encoder.encode(bytes(frame.planes[0])[:size])
        self._mux()

    def _mux(self) -> None:
        for data, samples in split_frames(self.pending):
            packet = av.Packet(data)
            packet.stream = self.target
            packet.time_base = Fraction(1, self.rate)
            packet.pts = packet.dts = (self.first or 0) + self.samples_out
            packet.duration = samples
            self.samples_out += samples
            self.output.mux(packet)

    def flush(self) -> None:
        self.push(None)
        self._encode(self.resampler.resample(None))
        self.pending += self.encoder.flush()
        self._mux()
