"""The media tools that write a media file: convert, extract-audio, trim, gif, strip-metadata.

Each is the pipeline's own machinery (probe and limits before any frame, a plan of copy or
encode per stream, `transcode`) with the tool's settings:

- convert: the conversion pipeline itself, `compressionLevel` as its compression.
- extract-audio: the first audio track, encoded at `bitrateKbps` (mp3/m4a/ogg; wav and flac are
  lossless and copy a track that is already in their codec).
- trim: `duration` seconds from `start`, frame-accurate (video is re-encoded from the keyframe
  before `start`; audio is copied where the container allows). No `format` keeps the input's
  format; inputs we cannot write (avi, mpg, ogv) become mp4.
- gif: the window at `fps` frames per second, `width` px wide at most (never upscaled), one
  palette for the clip.
- strip-metadata: every stream copied where the container allows, without container tags,
  chapters or cover art; inputs we cannot write become Matroska (nothing re-encoded that it can
  carry).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av

from mesh.errors import MeshError, Reason
from mesh.options import Box, ConversionOptions, Fit, Mode
from mesh.outcome import Outcome
from mesh.tools.params import (
    ExtractAudioParams,
    GifParams,
    MediaConvertParams,
    StripMetadataParams,
    TrimParams,
)
from services.media import codecs, pipeline
from services.media.budget import Budget
from services.media.codecs import Target
from services.media.geometry import plan_frames
from services.media.lanes import Timing, VideoSettings
from services.media.limits import MediaLimits
from services.media.plan import Plan, make_plan
from services.media.probe import Probe, open_input
from services.media.tools import window
from services.media.tools.running import probed, safely
from services.media.transcode import transcode

_FALLBACK_VIDEO = "mp4"
_FALLBACK_COPY = "mkv"
_BITRATE_CODECS = frozenset({"libmp3lame", "aac", "libopus"})
_MP3_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def convert(
    source: Path, output: Path, source_format: str, params: MediaConvertParams, limits: MediaLimits
) -> Outcome:
    options = ConversionOptions(
        format=params.format,
        resize=params.resize,
        resize_width=params.resize_width,
        resize_height=params.resize_height,
        compression=params.compression_level,
    )
    return pipeline.convert(source, output, source_format, options, limits)


def extract_audio(
    source: Path, output: Path, source_format: str, params: ExtractAudioParams, limits: MediaLimits
) -> Outcome:
    with safely(output):
        target = codecs.target_for(params.format, source_format)
        found = probed(source, source_format, limits)
        if found.audio is None:
            raise MeshError(Reason.NO_AUDIO_TRACK, "The input has no audio track to extract.")
        plan = _audio_plan(found, target, params.bitrate_kbps)
        timing = Timing(found.start_time, limits, pipeline.reporter(found.duration))
        transcode(source, source_format, found, plan, output, timing=timing)
        kbps = params.bitrate_kbps if plan.audio and plan.audio.bit_rate else None
        return pipeline.measure(output, target, kbps)


def _audio_plan(found: Probe, target: Target, kbps: int) -> Plan:
    if target.audio_codec not in _BITRATE_CODECS:
        return make_plan(found, target, ConversionOptions(format=target.name), None)
    if target.audio_codec == "libmp3lame":
        kbps = max(rate for rate in _MP3_KBPS if rate <= kbps)
    # A fixed bitrate is what target-size mode hands the audio encoder: reuse that path.
    options = ConversionOptions(format=target.name, mode=Mode.TARGET_SIZE, target_bytes=1)
    plan = make_plan(found, target, options, Budget(0, kbps * 1000))
    if plan.audio is not None and target.audio_codec == "libopus":
        # libopus's default VBR spends what the signal asks; the bitrate was asked for.
        constrained = {**plan.audio.options, "vbr": "constrained"}
        audio = dataclasses.replace(plan.audio, options=constrained)
        plan = dataclasses.replace(plan, audio=audio)
    return plan


def writable(source_format: str, found: Probe, requested: str, fallback: str) -> Target:
    if requested:
        return codecs.target_for(requested, source_format)
    if source_format in codecs.SAME_FORMAT:
        return codecs.target_for("", source_format)
    return codecs.TARGETS[fallback if found.video is not None else "m4a"]


def reencoding_video(found: Probe, target: Target, strip: bool = False) -> Plan:
    """Video re-encoded at the default quality (new pixels are needed); audio copied where the
    container can carry it."""
    keep = make_plan(
        found, target, ConversionOptions(format=target.name, strip_metadata=strip), None
    )
    fresh = make_plan(found, target, ConversionOptions(format="", strip_metadata=strip), None)
    if found.video is None or fresh.video is None:
        return keep
    return dataclasses.replace(keep, video=fresh.video, copy_video=False)


def trim(
    source: Path, output: Path, source_format: str, params: TrimParams, limits: MediaLimits
) -> Outcome:
    with safely(output):
        found = probed(source, source_format, limits, orient=True)
        target = writable(source_format, found, params.format, _FALLBACK_VIDEO)
        pipeline.check_pair(found, target, source_format)
        span = window.window_for(found, params.start, params.duration)
        plan = reencoding_video(found, target)
        timing = Timing(found.start_time + span.start, limits, pipeline.reporter(span.duration))
        window.transcode_window(
            source, source_format, found, plan, output, timing=timing, span=span
        )
        return pipeline.measure(output, target, None)


def gif(
    source: Path, output: Path, source_format: str, params: GifParams, limits: MediaLimits
) -> Outcome:
    with safely(output):
        found = probed(source, source_format, limits, orient=True)
        if found.video is None:
            raise MeshError(Reason.UNSUPPORTED_PAIR, "The input has no video to make a GIF of.")
        span = window.window_for(found, params.start, params.duration)
        info = found.video
        box = Box(params.width, None, Fit.INSIDE)
        frames = plan_frames(info.width, info.height, info.sample_aspect, info.rotation, box)
        settings = VideoSettings("gif", frames, "pal8", info.rate, fps=Fraction(params.fps))
        target = codecs.TARGETS["gif"]
        plan = Plan(target, settings, False, None, False, (), keep_metadata=False)
        start = found.start_time + span.start
        first = Timing(start, limits, pipeline.reporter(span.duration, 0, 0.5))
        palette = _palette(source, source_format, found, settings, (first, span))
        second = Timing(start, limits, pipeline.reporter(span.duration, 0.5, 0.5))
        window.transcode_window(
            source, source_format, found, plan, output, timing=second, span=span, palette=palette
        )
        return pipeline.measure(output, target, None)


def _palette(
    source: Path,
    source_format: str,
    found: Probe,
    settings: VideoSettings,
    run: tuple[Timing, window.Window],
) -> av.VideoFrame:
    timing, span = run
    assert found.video is not None
    with open_input(source, source_format, timing.limits) as container:
        stream = container.streams[found.video.index]
        lane = window.WindowPaletteLane(None, stream, timing, settings, window=span)
        window.pump_window(container, {stream.index: lane}, span)
    if lane.found is None:
        raise MeshError(Reason.CORRUPT_INPUT, "The video has no decodable frames in that range.")
    return lane.found


def strip_metadata(
    source: Path,
    output: Path,
    source_format: str,
    params: StripMetadataParams,
    limits: MediaLimits,
) -> Outcome:
    with safely(output):
        found = probed(source, source_format, limits)
        target = writable(source_format, found, "", _FALLBACK_COPY)
        plan = make_plan(
            found, target, ConversionOptions(format=target.name, strip_metadata=True), None
        )
        if found.video is not None and not plan.copy_video and plan.video is not None:
            # Only a video the container cannot carry is re-encoded; it is turned upright.
            found = probed(source, source_format, limits, orient=True)
            plan = make_plan(
                found, target, ConversionOptions(format=target.name, strip_metadata=True), None
            )
        timing = Timing(found.start_time, limits, pipeline.reporter(found.duration))
        transcode(source, source_format, found, plan, output, timing=timing)
        return pipeline.measure(output, target, None)
