"""Processing limits, checked from headers before any pixel is decoded."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from mesh.errors import MeshError, Reason


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 100_000_000  # source pixels, summed over the frames that are decoded
    max_frames: int = 1000
    max_output_pixels: int = 100_000_000


def guard_pillow(limits: ImageLimits) -> None:
    """Pillow raises DecompressionBombError above twice this; we want the error at the limit."""
    Image.MAX_IMAGE_PIXELS = limits.max_pixels // 2


def check_source(width: int, height: int, frames: int, limits: ImageLimits) -> None:
    if frames > limits.max_frames:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The image has {frames} frames; at most {limits.max_frames} are allowed.",
            frames=frames,
            max_frames=limits.max_frames,
        )
    pixels = width * height * frames
    if width <= 0 or height <= 0 or pixels > limits.max_pixels:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The image is {width}x{height} pixels"
            + (f" in {frames} frames" if frames > 1 else "")
            + f"; at most {limits.max_pixels} pixels are allowed.",
            width=width,
            height=height,
            frames=frames,
            max_pixels=limits.max_pixels,
        )


def check_output(width: int, height: int, frames: int, limits: ImageLimits) -> None:
    pixels = width * height * frames
    if pixels > limits.max_output_pixels:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The requested output would be {width}x{height} pixels"
            + (f" in {frames} frames" if frames > 1 else "")
            + f"; at most {limits.max_output_pixels} pixels are allowed.",
            width=width,
            height=height,
            frames=frames,
            max_output_pixels=limits.max_output_pixels,
        )
