"""Opening untrusted media safely and reading what it declares before decoding a frame.

FFmpeg picks demuxers by probing content, and some demuxers (HLS, concat, image sequences)
open further URLs named inside the file. So the demuxer is never probed freely: it is forced
from the content sniffer's verdict (`mesh.formats.sniff`), the container is opened with a
demuxer allowlist and a `file`-only protocol allowlist, and the opened demuxer's name is
checked once more against the allowlist.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.container
import av.error
import av.stream
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from mesh.errors import MeshError, Reason
from services.media.limits import MediaLimits, check_duration, check_resolution, check_streams

# Sniffed input format -> the demuxers tried for it, in order (a sniffed `mpg` may be a
# program stream or a raw elementary stream; ID3-tagged ADTS AAC or FLAC sniffs as `mp3`).
DEMUXERS: dict[str, tuple[str, ...]] = {
    "mp4": ("mov",),
    "mov": ("mov",),
    "m4a": ("mov",),
    "mkv": ("matroska",),
    "webm": ("matroska",),
    "avi": ("avi",),
    "ts": ("mpegts",),
    "mpg": ("mpeg", "mpegvideo"),
    "ogv": ("ogg",),
    "ogg": ("ogg",),
    "opus": ("ogg",),
    "mp3": ("mp3", "aac", "flac"),
    "aac": ("aac",),
    "wav": ("wav",),
    "flac": ("flac",),
    "gif": ("gif",),
    "webp": ("webp_pipe",),
}
# Every demuxer name above as FFmpeg reports it; nested opens inherit this allowlist.
FORMAT_WHITELIST = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,mpegvideo,ogg,mp3,aac,wav,flac,gif,"
    "webp_pipe"
)
_ALLOWED_NAMES = frozenset(FORMAT_WHITELIST.split(","))
_PICTURE_CODECS = frozenset({"mjpeg", "png"})
CONTAINER_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}


@dataclass(frozen=True)
class VideoInfo:
    index: int
    width: int
    height: int
    sample_aspect: Fraction
    rate: Fraction
    codec: str
    rotation: int  # degrees, FFmpeg's display-matrix convention (counter-clockwise)
    profile: str = ""  # as FFmpeg names it: High, High 10, Main, Profile 0, ...
    pixel_format: str = ""  # yuv420p, yuv420p10le, yuv422p, ...


@dataclass(frozen=True)
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    sample_format: str
    profile: str = ""  # AAC: LC, HE-AAC, ...


@dataclass(frozen=True)
class Probe:
    demuxer: str
    duration: float | None
    start_time: float
    video: VideoInfo | None
    audio: AudioInfo | None
    pictures: tuple[int, ...]  # attached cover art streams


def open_input(
    source: Path, source_format: str, limits: MediaLimits
) -> av.container.InputContainer:
    """Opens a local file with a forced, allowlisted demuxer. Never decodes a frame itself."""
    demuxers = DEMUXERS.get(source_format)
    if demuxers is None:
        raise MeshError(
            Reason.UNSUPPORTED_FORMAT,
            f"'{source_format or 'unknown'}' is not a media format this service reads.",
            format=source_format,
        )
    url = "file:" + str(source.resolve())
    for demuxer in demuxers:
        try:
            container = av.open(
                url,
                format=demuxer,
                container_options=CONTAINER_OPTIONS,
                options={"max_pixels": str(limits.max_pixels)},
            )
        except av.error.FFmpegError:
            continue
        if container.format.name.split(",")[0] not in _ALLOWED_NAMES:
            container.close()
            raise MeshError(Reason.UNSUPPORTED_FORMAT, "This container format is not supported.")
        if _has_media(container) or demuxer == demuxers[-1]:
            return container
        container.close()  # opened, but found nothing: the next candidate may read it
    raise MeshError(
        Reason.CORRUPT_INPUT,
        f"The file is not a readable {source_format} file; it may be damaged or truncated.",
        format=source_format,
    )


def _has_media(container: av.container.InputContainer) -> bool:
    return any(
        (isinstance(s, VideoStream) and s.codec_context.width)
        or (isinstance(s, AudioStream) and s.codec_context.sample_rate)
        for s in container.streams
    )


def _is_picture(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def probe(container: av.container.InputContainer, limits: MediaLimits) -> Probe:
    """Reads the header facts and enforces the limits on them."""
    streams = list(container.streams)
    check_streams(len(streams), limits)
    duration = container.duration / av.time_base if container.duration else None
    check_duration(duration, limits)
    video: VideoInfo | None = None
    audio: AudioInfo | None = None
    pictures: list[int] = []
    for stream in streams:
        if isinstance(stream, VideoStream) and _is_picture(stream):
            if stream.codec_context.codec.canonical_name in _PICTURE_CODECS:
                pictures.append(stream.index)
        elif isinstance(stream, VideoStream) and video is None:
            vctx = stream.codec_context
            check_resolution(vctx.width, vctx.height, limits)
            if vctx.width and vctx.height:
                video = VideoInfo(
                    index=stream.index,
                    width=vctx.width,
                    height=vctx.height,
                    sample_aspect=Fraction(stream.sample_aspect_ratio or 1),
                    rate=Fraction(stream.average_rate or stream.guessed_rate or 25),
                    codec=vctx.codec.canonical_name,
                    rotation=0,
                    profile=vctx.profile or "",
                    pixel_format=vctx.pix_fmt or "",
                )
        elif isinstance(stream, AudioStream) and audio is None and stream.codec_context.sample_rate:
            actx = stream.codec_context
            audio = AudioInfo(
                index=stream.index,
                codec=actx.codec.canonical_name,
                sample_rate=actx.sample_rate,
                channels=actx.channels,
                sample_format=actx.format.name if actx.format else "",
                profile=actx.profile or "",
            )
    if video is None and audio is None:
        raise MeshError(Reason.CORRUPT_INPUT, "The file contains no decodable audio or video.")
    start = container.start_time / av.time_base if container.start_time else 0.0
    return Probe(
        demuxer=container.format.name,
        duration=duration,
        start_time=start,
        video=video,
        audio=audio,
        pictures=tuple(pictures),
    )


def first_frame_rotation(source: Path, source_format: str, index: int, limits: MediaLimits) -> int:
    """The display rotation, which FFmpeg attaches to decoded frames rather than to streams."""
    with open_input(source, source_format, limits) as container:
        stream = cast(VideoStream, container.streams[index])
        stream.codec_context.options = {"max_pixels": str(limits.max_pixels)}
        try:
            for frame in container.decode(stream):
                return round(frame.rotation or 0)
        except av.error.FFmpegError:
            return 0
    return 0
