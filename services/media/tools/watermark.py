"""watermark on a video: a text or logo mark laid over every frame by FFmpeg's overlay filter.

The video is re-encoded (turned upright first) in the input's own format, inputs we cannot
write becoming mp4; audio is copied where the container allows. The mark is made once for the
output's width (`mesh.tools.marks`) and fed to the overlay as a single still frame, which the
filter repeats over the whole clip.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import av
import av.filter
from PIL import Image

from mesh.errors import MeshError, Reason
from mesh.outcome import Outcome
from mesh.tools import marks
from mesh.tools.params import WatermarkParams
from services.media import pipeline
from services.media.lanes import Timing, VideoLane
from services.media.limits import MediaLimits
from services.media.tools.clips import reencoding_video, writable
from services.media.tools.running import probed, safely
from services.media.transcode import transcode

_LOGO_FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "AVIF"]


class MarkedLane(VideoLane):
    """A video lane whose graph ends in an overlay of one still RGBA frame."""

    def __init__(self, *args: Any, mark: av.VideoFrame, at: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mark = mark
        self.at = at

    def _build_graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        head = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=self.time_base
        )
        for name, args in self.settings.frames.filters:
            node = graph.add(name, args or None)
            head.link_to(node)
            head = node
        still = graph.add_buffer(
            width=self.mark.width,
            height=self.mark.height,
            format=av.VideoFormat("rgba"),
            time_base=self.time_base,
        )
        overlay = graph.add("overlay", f"x={self.at[0]}:y={self.at[1]}:eof_action=repeat")
        head.link_to(overlay, 0, 0)
        still.link_to(overlay, 0, 1)
        encoder_format = graph.add("format", self.settings.pix_fmt)
        overlay.link_to(encoder_format)
        encoder_format.link_to(graph.add("buffersink"))
        graph.configure()
        self.mark.pts = 0
        still.push(self.mark)
        still.push(None)
        return graph


def open_logo(logo: Path, limits: MediaLimits) -> Image.Image:
    """The logo, its size checked from the header before it is decoded."""
    try:
        with Image.open(logo, formats=_LOGO_FORMATS) as image:
            if image.width * image.height > limits.max_pixels:
                raise MeshError(
                    Reason.LIMIT_EXCEEDED,
                    f"The watermark file is {image.width}x{image.height}; at most "
                    f"{limits.max_pixels} pixels are allowed.",
                    limit="watermark_pixels",
                )
            return image.convert("RGBA")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MeshError(
            Reason.CORRUPT_INPUT,
            "The watermark file is not a PNG, JPEG, WebP, GIF or AVIF image that can be read.",
            fields={"watermarkFile": "must be a readable image"},
        ) from error


def watermark(
    source: Path,
    output: Path,
    source_format: str,
    params: WatermarkParams,
    limits: MediaLimits,
    *,
    logo: Path | None = None,
) -> Outcome:
    params.require_one(logo is not None)
    with safely(output):
        found = probed(source, source_format, limits, orient=True)
        if found.video is None:
            raise MeshError(Reason.UNSUPPORTED_PAIR, "The input has no video to watermark.")
        target = writable(source_format, found, "", "mp4")
        plan = reencoding_video(found, target)
        assert plan.video is not None
        size = (plan.video.frames.width, plan.video.frames.height)
        picture = open_logo(logo, limits) if logo is not None else None
        mark = marks.render(params, picture, size[0])
        at = marks.offset(params.position, size, mark.size, params.margin)
        still = av.VideoFrame.from_image(mark)  # type: ignore[no-untyped-call]
        timing = Timing(found.start_time, limits, pipeline.reporter(found.duration))
        lane = functools.partial(MarkedLane, mark=still, at=at)
        transcode(source, source_format, found, plan, output, timing=timing, video_lane=lane)
        return pipeline.measure(output, target, None)
