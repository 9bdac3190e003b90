"""Resource caps for media inputs, checked from the container header before any frame is decoded
and again against decoded timestamps (raw streams may not declare a duration)."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import MeshError, Reason


@dataclass(frozen=True)
class MediaLimits:
    max_duration_seconds: float = 4 * 3600
    max_width: int = 7680
    max_height: int = 4320
    max_streams: int = 16

    @property
    def max_pixels(self) -> int:
        return self.max_width * self.max_height


def check_duration(seconds: float | None, limits: MediaLimits) -> None:
    if seconds is not None and seconds > limits.max_duration_seconds:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The media is longer than the {limits.max_duration_seconds:g} s limit.",
            limit="duration",
            maxSeconds=limits.max_duration_seconds,
            seconds=round(seconds, 3),
        )


def check_resolution(width: int, height: int, limits: MediaLimits) -> None:
    if width > limits.max_width or height > limits.max_height:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The video is larger than {limits.max_width}x{limits.max_height}.",
            limit="resolution",
            maxWidth=limits.max_width,
            maxHeight=limits.max_height,
            width=width,
            height=height,
        )


def check_streams(count: int, limits: MediaLimits) -> None:
    if count > limits.max_streams:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The file has more than {limits.max_streams} streams.",
            limit="streams",
            maxStreams=limits.max_streams,
            streams=count,
        )
