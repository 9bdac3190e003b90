"""Target-size mode: the best output that fits in `target_bytes`, in at most MAX_ENCODES encodes.

Lossy formats first search quality (the requested quality, then a floor, then a binary search
between them, keeping the highest quality that fits); when even the floor is too big, the image
is scaled down by the square root of the size ratio (bytes grow roughly with pixel count) and
tried again at the floor. Lossless formats (png, gif, tiff) can only shrink by palette (png) and
scale. Candidates are written next to the output and the best one is moved into place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import pyvips

from mesh.errors import MeshError, Reason
from services.image import encode
from services.image.resize import per_page

MAX_ENCODES = 8
QUALITY_FLOOR = 10
MIN_SIDE = 16
# Aim under the estimate: encoded size does not scale exactly with pixels.
_SCALE_MARGIN = 0.9


@dataclass(frozen=True)
class Fitted:
    encoding: encode.Encoding
    width: int
    height: int  # of one frame
    size: int


class _Search:
    def __init__(self, image: pyvips.Image, output: Path, frames: int, target: int) -> None:
        self.image = image
        self.output = output
        self.frames = frames
        self.target = target
        self.scratch = output.with_name(output.name + ".candidate")
        self.encodes = 0
        self.best: Fitted | None = None
        self.smallest: int | None = None

    def left(self) -> int:
        return MAX_ENCODES - self.encodes

    def attempt(self, image: pyvips.Image, encoding: encode.Encoding) -> int:
        self.encodes += 1
        encode.save(image, self.scratch, encoding)
        size = self.scratch.stat().st_size
        self.smallest = size if self.smallest is None else min(self.smallest, size)
        if size <= self.target and self._better(encoding, image):
            self.scratch.replace(self.output)
            self.best = Fitted(encoding, image.width, image.height // self.frames, size)
        return size

    def _better(self, encoding: encode.Encoding, image: pyvips.Image) -> bool:
        if self.best is None:
            return True
        if image.width != self.best.width:
            return bool(image.width > self.best.width)
        return (encoding.quality or 0) > (self.best.encoding.quality or 0)


def search(
    image: pyvips.Image, output: Path, frames: int, encoding: encode.Encoding, target_bytes: int
) -> Fitted:
    if target_bytes <= 0:
        raise MeshError(
            Reason.INVALID_FIELD,
            "targetBytes must be a positive number of bytes in target-size mode.",
            fields=["targetBytes"],
        )
    run = _Search(image.copy_memory(), output, frames, target_bytes)
    try:
        encoding = replace(encoding, lossless=False)
        if encoding.quality is not None:
            _search_quality(run, encoding)
        else:
            _search_lossless(run, encoding)
    finally:
        run.scratch.unlink(missing_ok=True)
    if run.best is None:
        raise MeshError(
            Reason.TARGET_UNREACHABLE,
            f"The smallest output reached was {run.smallest} bytes, above the target of "
            f"{target_bytes} bytes.",
            smallest_bytes=run.smallest,
            target_bytes=target_bytes,
        )
    return run.best


def _search_quality(run: _Search, encoding: encode.Encoding) -> None:
    high = encoding.quality or 100
    at_high = run.attempt(run.image, encoding)
    if at_high <= run.target:
        return
    low = min(QUALITY_FLOOR, high)
    at_low = run.attempt(run.image, replace(encoding, quality=low))
    if at_low <= run.target:
        _bisect_quality(run, run.image, encoding, low, high)
        return
    # Too big even at the floor: shrink, aiming a middle quality at the target. Its size at
    # full scale is estimated between the two we measured.
    middle = (low + high) // 2
    estimate = math.sqrt(at_low * at_high)
    smaller = scaled(run.image, run.frames, math.sqrt(run.target / estimate) * _SCALE_MARGIN)
    if smaller is None:
        return
    if run.attempt(smaller, replace(encoding, quality=middle)) <= run.target:
        _bisect_quality(run, smaller, encoding, middle, high)
        return
    size = run.attempt(smaller, replace(encoding, quality=low))
    if size <= run.target:
        _bisect_quality(run, smaller, encoding, low, middle)
        return
    run.image = smaller
    _search_scale(run, replace(encoding, quality=low), size)


def _bisect_quality(
    run: _Search, image: pyvips.Image, encoding: encode.Encoding, low: int, high: int
) -> None:
    """`low` fits and `high` does not: find the highest quality between them that fits."""
    while high - low > 1 and run.left() > 0:
        middle = (low + high) // 2
        if run.attempt(image, replace(encoding, quality=middle)) <= run.target:
            low = middle
        else:
            high = middle


def _search_lossless(run: _Search, encoding: encode.Encoding) -> None:
    size = run.attempt(run.image, encoding)
    if size <= run.target:
        return
    if encoding.format == "png":
        encoding = replace(encoding, quality=90)
        size = run.attempt(run.image, encoding)
        if size <= run.target:
            return
    _search_scale(run, encoding, size)


def _search_scale(run: _Search, encoding: encode.Encoding, size: int) -> None:
    scale = 1.0
    while run.left() > 0:
        scale *= math.sqrt(run.target / size) * _SCALE_MARGIN
        smaller = scaled(run.image, run.frames, scale)
        if smaller is None:
            return
        size = run.attempt(smaller, encoding)
        if size <= run.target:
            return


def scaled(image: pyvips.Image, frames: int, scale: float) -> pyvips.Image | None:
    """Each frame scaled by `scale`, or None when that would go below MIN_SIDE."""
    page_height = image.height // frames
    width, height = round(image.width * scale), round(page_height * scale)
    if min(width, height) < MIN_SIDE:
        return None
    return per_page(
        image, frames, lambda page: page.thumbnail_image(width, height=height, size="force")
    )
