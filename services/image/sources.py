"""What `decode.open_source` found: one small type per way a source is read, each loading
itself resized by a plan. `Source` is their union.

Every load ends as a pyvips image made by `thumbnail`, so downscales shrink on load where the
codec allows it, oriented and in sRGB (lazy for file sources).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyvips
from PIL import Image

from mesh.errors import MeshError, Reason
from services.image import pdfpage, pillowload
from services.image.resize import UNBOUNDED, Plan, per_page

# Orientations 5-8 swap width and height once applied.
_TRANSPOSING = frozenset({5, 6, 7, 8})

Options = dict[str, object]


def corrupt(what: str = "image") -> MeshError:
    return MeshError(
        Reason.CORRUPT_INPUT,
        f"The {what} could not be decoded: it is damaged, truncated or not what its content "
        "claims to be.",
    )


@dataclass(frozen=True, kw_only=True)
class _Checked:
    """A source whose header passed the limits. `frames` is how many frames will be decoded
    (1 unless animating)."""

    format: str
    width: int
    page_height: int
    frames: int = 1
    orientation: int = 1

    def oriented_size(self, auto_orient: bool) -> tuple[int, int]:
        if auto_orient and self.orientation in _TRANSPOSING:
            return self.page_height, self.width
        return self.width, self.page_height


@dataclass(frozen=True, kw_only=True)
class VipsFile(_Checked):
    """A file libvips reads itself: its `page` of `pages` for a multi-page file."""

    path: Path
    page: int = 0
    pages: int = 1
    has_icc: bool = False
    bands: int = 3
    cmyk: bool = False

    def load(self, plan: Plan, auto_orient: bool) -> pyvips.Image:
        options = _thumbnail_options(plan, auto_orient, self.has_icc)
        if self.cmyk:
            image = pyvips.Image.new_from_file(self._file(), access="sequential")
            # thumbnail's own CMYK import is relative-colourimetric, which turns a CMYK
            # profile's rich black into dark grey; perceptual maps it to sRGB black.
            image = image.icc_transform(
                "srgb", intent="perceptual", embedded=True, input_profile="cmyk"
            )
            options.pop("output_profile", None)
            return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **options)
        if self.frames > 1:
            every_frame = f"{self.path}[n=-1]"
            return _animation(
                self,
                plan,
                options,
                lambda width, given: pyvips.Image.thumbnail(every_frame, width, **given),
            )
        return pyvips.Image.thumbnail(self._file(), plan.thumbnail_width, **options)

    def _file(self) -> str:
        return f"{self.path}[page={self.page}]" if self.page else str(self.path)


@dataclass(frozen=True, kw_only=True)
class PillowImage(_Checked):
    """A picture only Pillow reads (HEVC HEIF, BMP, ICO, APNG, AVIF sequences, odd TIFFs)."""

    image: Image.Image
    has_icc: bool = False

    def load(self, plan: Plan, auto_orient: bool) -> pyvips.Image:
        options = _thumbnail_options(plan, auto_orient, self.has_icc)
        options["no_rotate"] = True  # Pillow's copy is oriented already
        image = self._to_vips(auto_orient)
        if self.frames > 1:
            return _animation(
                self,
                plan,
                options,
                lambda width, given: pyvips.Image.thumbnail_image(image, width, **given),
            )
        return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **options)

    def _to_vips(self, auto_orient: bool) -> pyvips.Image:
        try:
            if self.frames > 1:
                return pillowload.to_vips_strip(self.image, self.frames)
            return pillowload.to_vips(self.image, auto_orient)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise corrupt() from error


@dataclass(frozen=True, kw_only=True)
class SvgDocument(_Checked):
    """A sanitised SVG, rendered at the scale the plan asks (never past `max_scale`, when the
    document's own size would make rendering at that scale too costly)."""

    data: bytes
    max_scale: float | None = None

    def load(self, plan: Plan, auto_orient: bool) -> pyvips.Image:
        options = _thumbnail_options(plan, auto_orient, has_icc=False)
        if self.max_scale is None:
            return pyvips.Image.thumbnail_buffer(self.data, plan.thumbnail_width, **options)
        scale = min(self._scale_for(plan), self.max_scale or 1.0)
        image = pyvips.Image.svgload_buffer(self.data, scale=scale)
        options["no_rotate"] = True
        return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **options)

    def _scale_for(self, plan: Plan) -> float:
        """The scale `plan` asks of the source."""
        ratios = [
            target / side
            for target, side in (
                (plan.thumbnail_width, self.width),
                (plan.thumbnail_height, self.page_height),
            )
            if target < UNBOUNDED
        ]
        scale = (max if plan.crop == "centre" else min)(ratios) if ratios else 1.0
        return min(scale, 1.0) if plan.size == "down" else scale


@dataclass(frozen=True, kw_only=True)
class PdfDocument(_Checked):
    """A PDF's first page, rendered by pdfium at the size the plan asks."""

    page: pdfpage.Page

    def load(self, plan: Plan, auto_orient: bool) -> pyvips.Image:
        options = _thumbnail_options(plan, auto_orient, has_icc=False)
        options["no_rotate"] = True
        image = self.page.render(plan.thumbnail_width, plan.thumbnail_height)
        return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **options)


Source = VipsFile | PillowImage | SvgDocument | PdfDocument


def _thumbnail_options(plan: Plan, auto_orient: bool, has_icc: bool) -> Options:
    options: Options = {
        "height": plan.thumbnail_height,
        "size": plan.size,
        "crop": plan.crop,
        "no_rotate": not auto_orient,
    }
    if has_icc:
        options["output_profile"] = "srgb"
    return options


def _animation(
    source: _Checked,
    plan: Plan,
    options: Options,
    thumbnail: Callable[[int, Options], pyvips.Image],
) -> pyvips.Image:
    """Every frame resized: thumbnail would crop the whole strip of frames as one picture, so
    a cropping plan scales the strip to cover, then crops each frame."""
    width = plan.thumbnail_width
    if plan.crop == "centre":
        scale = max(plan.width / source.width, plan.height / source.page_height)
        width = max(plan.width, round(source.width * scale))
        options = {**options, "crop": "none", "height": UNBOUNDED}
    image = thumbnail(width, options)
    if plan.crop != "centre":
        return image
    page_height = image.get("page-height")
    left = (image.width - plan.width) // 2
    top = (page_height - plan.height) // 2
    return per_page(
        image.copy_memory(),
        source.frames,
        lambda page: page.crop(left, top, plan.width, plan.height),
    )
