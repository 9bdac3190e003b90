"""Output formats: which muxer and encoders each one uses, which input codecs it can carry
unchanged, and how `compression` (1-100, higher = better) becomes each encoder's quality knob.

| output | muxer | video | audio |
| --- | --- | --- | --- |
| mp4 | mp4 (+faststart) | H.264 (libx264) | AAC |
| mov | mov | H.264 (libx264) | AAC |
| webm | webm | VP9 (libvpx-vp9) | Opus |
| mkv, ts | matroska, mpegts (compress jobs keeping the input's format) | H.264 | AAC |
| mp3 | mp3 | - | MP3 (libmp3lame, VBR) |
| m4a | mp4, brand `M4A ` (ipod refuses cover art) | - | AAC (ALAC when lossless) |
| wav | wav | - | PCM s16le |
| ogg | ogg | - | Opus (FLAC when lossless) |
| flac | flac | - | FLAC |
| aac, opus | adts, ogg (compress jobs keeping the input's format) | - | AAC, Opus |
| gif | gif | GIF (per-clip palette, see gif.py) | - |

`ogg` carries Opus, not Vorbis: the FFmpeg inside PyAV's wheel is built without libvorbis.

A converted video must play in every current browser and phone, so mp4, mov and webm copy a
stream only when it already is what those players take, and re-encode it otherwise:

| output | video copied when | audio copied when |
| --- | --- | --- |
| mp4, mov | H.264 Constrained Baseline/Baseline/Main/High, 8-bit 4:2:0 | AAC LC/HE/HEv2 |
| webm | VP9 profile 0, 8-bit 4:2:0 | Opus |

HEVC, AV1, VP8, High 10 / 4:2:2 / 4:4:4 H.264, MP3, FLAC, ALAC, Vorbis and the rest are
re-encoded: each has a current browser or phone that does not play it in that container.

Quality table (q = compression; 82, the API default, gives each encoder's usual default):

| encoder | knob | formula | q=1 | q=82 | q=100 |
| --- | --- | --- | --- | --- | --- |
| libx264 | crf | 51 - 0.34 q | 51 | 23 | 17 |
| libvpx-vp9 | crf (b:v 0) | 63 - 0.39 q | 63 | 31 | 24 |
| libmp3lame | VBR -q | 9 - 0.09 q | 9 | 2 (~190 kb/s) | 0 |
| aac | kb/s per channel | 16 + 0.8 q | 17 | 82 | 96 |
| libopus | kb/s per channel | 8 + 0.6 q | 9 | 57 | 68 |
| flac, pcm, alac | lossless: compression has no effect | | | | |

`lossless` means x264 qp 0 / VP9 lossless for video, FLAC/PCM/ALAC for audio (FLAC in Ogg for
ogg); mp3 and gif cannot be lossless and refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS, Family


@dataclass(frozen=True)
class Target:
    name: str
    mime_type: str
    muxer: str
    video_codec: str | None
    audio_codec: str | None
    copy_video: frozenset[str] = frozenset()
    copy_audio: frozenset[str] = frozenset()
    muxer_options: dict[str, str] = field(default_factory=dict)
    keeps_pictures: bool = False
    lossless_audio: str | None = None
    # A copied stream must also have one of these (empty: any), see the players table.
    video_profiles: frozenset[str] = frozenset()
    pixel_formats: frozenset[str] = frozenset()
    audio_profiles: frozenset[str] = frozenset()

    @property
    def family(self) -> Family:
        return Family.VIDEO if self.video_codec else Family.AUDIO


_ISO_VIDEO = frozenset({"h264", "hevc"})
_ISO_AUDIO = frozenset({"aac", "mp3", "alac"})
_PLAYED_H264 = frozenset({"h264"})
_PLAYED_AAC = frozenset({"aac"})
_H264_PROFILES = frozenset({"Constrained Baseline", "Baseline", "Main", "High"})
_AAC_PROFILES = frozenset({"LC", "HE-AAC", "HE-AACv2"})
_EIGHT_BIT_420 = frozenset({"yuv420p", "yuvj420p"})

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "mp4",
            "video/mp4",
            "mp4",
            "libx264",
            "aac",
            _PLAYED_H264,
            _PLAYED_AAC,
            {"movflags": "+faststart"},
            video_profiles=_H264_PROFILES,
            pixel_formats=_EIGHT_BIT_420,
            audio_profiles=_AAC_PROFILES,
        ),
        Target(
            "mov",
            "video/quicktime",
            "mov",
            "libx264",
            "aac",
            _PLAYED_H264,
            _PLAYED_AAC,
            video_profiles=_H264_PROFILES,
            pixel_formats=_EIGHT_BIT_420,
            audio_profiles=_AAC_PROFILES,
        ),
        Target(
            "webm",
            "video/webm",
            "webm",
            "libvpx-vp9",
            "libopus",
            frozenset({"vp9"}),
            frozenset({"opus"}),
            video_profiles=frozenset({"Profile 0"}),
            pixel_formats=frozenset({"yuv420p"}),
        ),
        Target(
            "mkv",
            "video/x-matroska",
            "matroska",
            "libx264",
            "aac",
            _ISO_VIDEO | {"vp8", "vp9", "av1"},
            _ISO_AUDIO | {"opus", "vorbis", "flac", "ac3"},
        ),
        Target(
            "ts", "video/mp2t", "mpegts", "libx264", "aac", _ISO_VIDEO, frozenset({"aac", "mp3"})
        ),
        Target("gif", "image/gif", "gif", "gif", None),
        Target(
            "mp3",
            "audio/mpeg",
            "mp3",
            None,
            "libmp3lame",
            copy_audio=frozenset({"mp3"}),
            keeps_pictures=True,
        ),
        Target(
            "m4a",
            "audio/mp4",
            "mp4",
            None,
            "aac",
            copy_audio=frozenset({"aac", "alac"}),
            muxer_options={"brand": "M4A ", "movflags": "+faststart"},
            keeps_pictures=True,
            lossless_audio="alac",
        ),
        Target(
            "wav",
            "audio/wav",
            "wav",
            None,
            "pcm_s16le",
            copy_audio=frozenset({"pcm_s16le"}),
            lossless_audio="pcm_s16le",
        ),
        Target(
            "ogg",
            "audio/ogg",
            "ogg",
            None,
            "libopus",
            copy_audio=frozenset({"opus", "vorbis"}),
            lossless_audio="flac",
        ),
        Target(
            "flac",
            "audio/flac",
            "flac",
            None,
            "flac",
            copy_audio=frozenset({"flac"}),
            keeps_pictures=True,
            lossless_audio="flac",
        ),
        Target("aac", "audio/aac", "adts", None, "aac", copy_audio=frozenset({"aac"})),
        Target(
            "opus",
            "audio/ogg",
            "ogg",
            None,
            "libopus",
            copy_audio=frozenset({"opus"}),
            lossless_audio="flac",
        ),
    )
}

# A compress job keeps the input's format; these inputs are written as that target.
SAME_FORMAT: dict[str, str] = {
    "mp4": "mp4",
    "mov": "mov",
    "webm": "webm",
    "mkv": "mkv",
    "ts": "ts",
    "gif": "gif",
    "mp3": "mp3",
    "m4a": "m4a",
    "wav": "wav",
    "ogg": "ogg",
    "flac": "flac",
    "aac": "aac",
    "opus": "opus",
}


# What a client may ask for; the other targets only keep an input's format (compress jobs).
OUTPUTS = tuple(name for name in OUTPUT_FORMATS if name in TARGETS)


def target_for(output_format: str, source_format: str) -> Target:
    name = output_format or SAME_FORMAT.get(source_format, "")
    if name not in TARGETS or (output_format and output_format not in OUTPUTS):
        wanted = output_format or source_format
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"Media cannot be written as {wanted}; choose {', '.join(OUTPUTS)}.",
            format=wanted,
        )
    return TARGETS[name]


def _allowed(value: str, allowed: frozenset[str]) -> bool:
    return not allowed or value in allowed


def copies_video(target: Target, codec: str, profile: str, pixel_format: str) -> bool:
    """True when a video stream may go into `target` unchanged (the players table)."""
    return (
        codec in target.copy_video
        and _allowed(profile, target.video_profiles)
        and _allowed(pixel_format, target.pixel_formats)
    )


def copies_audio(target: Target, codec: str, profile: str) -> bool:
    return codec in target.copy_audio and _allowed(profile, target.audio_profiles)


def x264_options(compression: int, lossless: bool) -> dict[str, str]:
    if lossless:
        return {"qp": "0", "preset": "veryfast"}
    return {"crf": str(round(51 - 0.34 * compression)), "preset": "veryfast"}


def vp9_options(compression: int, lossless: bool) -> dict[str, str]:
    speed = {"deadline": "good", "cpu-used": "5", "row-mt": "1"}
    if lossless:
        return {**speed, "lossless": "1"}
    return {**speed, "crf": str(round(63 - 0.39 * compression)), "b": "0"}


def audio_bitrate(codec: str, compression: int, channels: int) -> int:
    """Bits per second for the bitrate-driven audio encoders."""
    per_channel = {"aac": 16 + 0.8 * compression, "libopus": 8 + 0.6 * compression}[codec]
    return int(per_channel * 1000) * max(1, min(channels, 2))


def mp3_vbr_quality(compression: int) -> int:
    return max(0, min(9, round(9 - 0.09 * compression)))


def refuse_lossless(target: Target) -> None:
    raise MeshError(
        Reason.INVALID_FIELD,
        f"{target.name} cannot be lossless; choose flac or wav for lossless audio.",
        fields={"lossless": f"{target.name} cannot be lossless"},
    )
