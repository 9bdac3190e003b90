"""Animated WebP as a video source. The FFmpeg in PyAV's wheel cannot decode animated WebP, so
its frames are decoded by Pillow and written, frame by frame with their own durations, as
lossless FFV1 in Matroska: an input the pipeline reads like any other video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from mesh.errors import MeshError, Reason
from services.media.limits import MediaLimits

MILLISECONDS = Fraction(1, 1000)
DEFAULT_FRAME_MS = 100


def is_animated(source: Path) -> bool:
    # An animated WebP carries an ANIM chunk right after its VP8X header.
    with source.open("rb") as file:
        return b"ANIM" in file.read(64)


def to_video(source: Path, target: Path, limits: MediaLimits) -> Path:
    """Writes the animation to `target` (FFV1 in Matroska) and returns it."""
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        image = Image.open(source, formats=["WEBP"])
    except (OSError, Image.DecompressionBombError) as error:
        raise MeshError(Reason.CORRUPT_INPUT, "The WebP file could not be decoded.") from error
    with image:
        width, height = image.size
        frames = getattr(image, "n_frames", 1)
        if width > limits.max_width or height > limits.max_height:
            raise MeshError(
                Reason.LIMIT_EXCEEDED,
                f"The animation is {width}x{height}; at most "
                f"{limits.max_width}x{limits.max_height} is allowed.",
                limit="resolution",
            )
        if frames < 2:
            raise MeshError(
                Reason.UNSUPPORTED_PAIR,
                "This WebP is a still image; convert it to an image format instead.",
                pair="webp->video",
            )
        even_width, even_height = width - width % 2 or 2, height - height % 2 or 2
        with av.open(str(target), mode="w", format="matroska") as container:
            stream = container.add_stream("ffv1", rate=1000)
            stream.width, stream.height = even_width, even_height
            stream.pix_fmt = "yuv444p"
            stream.time_base = MILLISECONDS
            pts = 0
            for index in range(frames):
                image.seek(index)
                picture = image.convert("RGB").crop((0, 0, even_width, even_height))
                frame = av.VideoFrame.from_image(picture).reformat(format="yuv444p")  # type: ignore[no-untyped-call]
                frame.pts, frame.time_base = pts, MILLISECONDS
                container.mux(stream.encode(frame))
                pts += int(image.info.get("duration") or DEFAULT_FRAME_MS)
            container.mux(stream.encode(None))
    return target
