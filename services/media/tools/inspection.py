"""inspect: the facts a media file declares, as the `{"media": {...}}` document of API.md.

Read from the container header alone, as ffprobe reads them, so the figures agree with it:
duration and bitrate are the container's (null where it declares none, as for raw MPEG
video), width and height the first video stream's stored size, codecs FFmpeg's canonical names.
Nothing is decoded, so only the stream-count limit applies; the document is written as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, Family
from mesh.outcome import Outcome
from mesh.tools.params import InspectParams
from services.media.limits import MediaLimits, check_streams
from services.media.probe import open_input
from services.media.tools.running import safely

_MIME_TYPES = {
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "ts": "video/mp2t",
    "mpg": "video/mpeg",
    "ogv": "video/ogg",
    "aac": "audio/aac",
    "opus": "audio/ogg",
}


def inspect(
    source: Path, output: Path, source_format: str, params: InspectParams, limits: MediaLimits
) -> Outcome:
    with safely(output), open_input(source, source_format, limits) as container:
        check_streams(len(container.streams), limits)
        document = {"media": describe(container, source, source_format, params.filename)}
    output.write_text(json.dumps(document, indent=2) + "\n")
    return Outcome("json", "application/json")


def _mime_type(source_format: str) -> str:
    known = OUTPUT_FORMATS.get(source_format)
    return known.mime_type if known else _MIME_TYPES.get(source_format, "application/octet-stream")


def _seconds(value: int | None, time_base: Any) -> float | None:
    if value is None or time_base is None:
        return None
    return round(float(value * time_base), 6)


def _kbps(bits: int | None) -> int | None:
    return round(bits / 1000) if bits else None


def _is_picture(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _stream(stream: av.stream.Stream) -> dict[str, Any]:
    codec = stream.codec_context
    entry: dict[str, Any] = {
        "index": stream.index,
        "type": stream.type,
        "codec": codec.codec.canonical_name if codec is not None and codec.codec else None,
        "duration": _seconds(stream.duration, stream.time_base),
        "bitrateKbps": _kbps(codec.bit_rate if codec is not None else None),
        "language": stream.metadata.get("language"),
    }
    if isinstance(stream, VideoStream):
        rate = stream.average_rate or stream.guessed_rate
        entry |= {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frameRate": round(float(rate), 3) if rate else None,
            "pixelFormat": stream.codec_context.format.name
            if stream.codec_context.format
            else None,
            "coverArt": _is_picture(stream),
        }
    elif isinstance(stream, AudioStream):
        entry |= {
            "sampleRate": stream.codec_context.sample_rate,
            "channels": stream.codec_context.channels,
            "channelLayout": stream.codec_context.layout.name,
        }
    return entry


def describe(
    container: av.container.InputContainer, source: Path, source_format: str, filename: str
) -> dict[str, Any]:
    streams = list(container.streams)
    video = next((s for s in streams if isinstance(s, VideoStream) and not _is_picture(s)), None)
    family = INPUT_FAMILIES.get(source_format)
    kind = "video" if video is not None else "audio" if family is not Family.IMAGE else "image"
    return {
        "filename": filename,
        "mimeType": _mime_type(source_format),
        "sizeBytes": source.stat().st_size,
        "kind": kind,
        "format": source_format,
        "container": container.format.name,
        "width": video.codec_context.width if video is not None else None,
        "height": video.codec_context.height if video is not None else None,
        "duration": round(container.duration / av.time_base, 6) if container.duration else None,
        "bitrateKbps": _kbps(container.bit_rate),
        "streams": [_stream(stream) for stream in streams],
    }
