"""The conversion plan: for each input stream, copy it, re-encode it (with which settings), or
leave it out.

Copy (remux) is the default whenever the stream already is what the output's players take
(codec, profile, bit depth, pixel format: `codecs.copies_video`/`copies_audio`) and no option
needs new pixels or samples. Re-encoding is required by: a compress job (empty output format),
a compression other than the default 82, lossless, target-size mode, and (video only) any
resize. A compress job left at the API default compression uses COMPRESS_COMPRESSION instead
(x264 CRF 28, VP9 CRF 36, AAC 70 kb/s and Opus 49 kb/s per channel, MP3 VBR -q 3; FLAC at
compression level 8), which shrinks typical camera and phone video.
Rotation is not a reason: a copied stream keeps its display matrix, which players honour,
while re-encoded frames are turned upright and carry no rotation.
`stripMetadata` never forces a re-encode: container tags, chapters and cover art are simply not
written. Only the first video and first audio stream are converted; subtitles and data go.
Cover art (JPEG/PNG attached pictures) is copied into mp3, flac and m4a and dropped elsewhere.

Audio keeps its sample rate where the encoder allows (else the next supported rate up; Opus is
always 48 kHz). MP3 and Opus get at most two channels; other encoders keep mono/stereo/5.1.
WAV output is always 16-bit PCM, so `lossless` to wav is exact only for 16-bit sources.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import av

from mesh.options import DEFAULT_COMPRESSION, ConversionOptions, Mode, box_for
from services.media import codecs, gif
from services.media.budget import Budget
from services.media.codecs import Target
from services.media.geometry import plan_frames
from services.media.lanes import AudioSettings, VideoSettings
from services.media.probe import AudioInfo, Probe, VideoInfo

_WIDE_FORMATS = frozenset({"s32", "s32p", "flt", "fltp", "dbl", "dblp"})
COMPRESS_COMPRESSION = 68
FLAC_COMPRESS_LEVEL = "8"


@dataclass(frozen=True)
class Plan:
    target: Target
    video: VideoSettings | None
    copy_video: bool
    audio: AudioSettings | None
    copy_audio: bool
    pictures: tuple[int, ...]
    keep_metadata: bool


def compressing(options: ConversionOptions) -> bool:
    """A compress job keeping the input's format reaches the worker without a format."""
    return not options.format


def effective(options: ConversionOptions) -> ConversionOptions:
    """The options as encoded: a compress left at the API default gets the compress default."""
    if compressing(options) and options.compression == DEFAULT_COMPRESSION:
        return replace(options, compression=COMPRESS_COMPRESSION)
    return options


def must_reencode(options: ConversionOptions) -> bool:
    return (
        not options.format
        or options.compression != DEFAULT_COMPRESSION
        or options.lossless
        or options.mode is Mode.TARGET_SIZE
    )


def _video_settings(
    info: VideoInfo, target: Target, options: ConversionOptions, budget: Budget | None
) -> VideoSettings:
    assert target.video_codec is not None
    box = box_for(options)
    frames = plan_frames(
        info.width,
        info.height,
        info.sample_aspect,
        info.rotation if options.auto_orient else 0,
        gif.DEFAULT_BOX if target.name == "gif" and options.resize == "original" else box,
    )
    if target.name == "gif":
        if options.lossless:
            codecs.refuse_lossless(target)
        return VideoSettings("gif", frames, "pal8", info.rate, fps=gif.gif_rate(info.rate))
    if target.video_codec == "libx264":
        options_ = codecs.x264_options(options.compression, options.lossless)
    else:
        options_ = codecs.vp9_options(options.compression, options.lossless)
    bit_rate = 0
    if budget is not None:
        options_ = {k: v for k, v in options_.items() if k not in ("crf", "b", "qp")}
        bit_rate = budget.video_bps
        options_ |= {"maxrate": str(int(bit_rate * 1.5)), "bufsize": str(bit_rate * 2)}
    return VideoSettings(target.video_codec, frames, "yuv420p", info.rate, options_, bit_rate)


def _sample_rate(codec: av.Codec, rate: int) -> int:
    rates = sorted(codec.audio_rates or ())
    if not rates or rate in rates:
        return rate
    return next((r for r in rates if r >= rate), rates[-1])


def _sample_format(codec: av.Codec, source: str, lossless: bool) -> str:
    names = [f.name for f in codec.audio_formats or ()]
    if not names:
        return source or "s16"
    # The same samples, packed or planar, avoid a conversion in the resampler.
    for candidate in (source, source.removesuffix("p"), source + "p"):
        if candidate in names:
            return candidate
    if lossless and source in _WIDE_FORMATS:
        wide = [n for n in names if n in ("s32", "s32p")]
        if wide:
            return wide[0]
    return names[0]


def _audio_settings(
    info: AudioInfo,
    target: Target,
    options: ConversionOptions,
    budget: Budget | None,
    video: bool,
) -> AudioSettings:
    assert target.audio_codec is not None
    name = target.audio_codec
    if options.lossless:
        if target.lossless_audio is None and not video:
            codecs.refuse_lossless(target)
        name = target.lossless_audio or name
    codec = av.Codec(name, "w")
    stereo_only = name in ("libmp3lame", "libopus")
    channels = min(info.channels, 2) if stereo_only else info.channels
    layout = {1: "mono", 2: "stereo"}.get(channels, "5.1" if channels >= 6 else "stereo")
    quality = 100 if options.lossless else options.compression
    settings: dict[str, str] = {}
    bit_rate = 0
    if budget is not None and name in ("aac", "libopus", "libmp3lame"):
        bit_rate = budget.audio_bps
    elif name in ("aac", "libopus"):
        bit_rate = codecs.audio_bitrate(name, quality, channels)
    elif name == "libmp3lame":
        settings = {
            "flags": "+qscale",
            "global_quality": str(codecs.mp3_vbr_quality(quality) * 118),
        }
    elif name == "flac" and compressing(options):
        settings = {"compression_level": FLAC_COMPRESS_LEVEL}
    return AudioSettings(
        name,
        _sample_rate(codec, info.sample_rate),
        layout,
        _sample_format(codec, info.sample_format, options.lossless),
        settings,
        bit_rate,
    )


def make_plan(
    probe: Probe, target: Target, options: ConversionOptions, budget: Budget | None
) -> Plan:
    reencode = must_reencode(options)
    video = probe.video if target.video_codec else None
    audio = probe.audio if target.audio_codec else None
    copy_video = bool(
        video
        and not reencode
        and options.resize == "original"
        and codecs.copies_video(target, video.codec, video.profile, video.pixel_format)
    )
    copy_audio = bool(
        audio and not reencode and codecs.copies_audio(target, audio.codec, audio.profile)
    )
    keep = not options.strip_metadata
    pictures: tuple[int, ...] = ()
    if keep and target.keeps_pictures:
        pictures = probe.pictures
    return Plan(
        target=target,
        video=None
        if video is None or copy_video
        else _video_settings(video, target, options, budget),
        copy_video=copy_video,
        audio=None
        if audio is None or copy_audio
        else _audio_settings(audio, target, options, budget, video is not None),
        copy_audio=copy_audio,
        pictures=pictures,
        keep_metadata=keep,
    )
