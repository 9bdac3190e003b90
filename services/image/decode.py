"""Opening a source: read its header, check the limits, and only then decode pixels.

libvips reads jpg/png/webp/avif/gif/tiff itself (header-only opens are lazy). HEVC HEIF, BMP
and ICO go through Pillow (the libvips wheel has no HEVC decoder, BMP or ICO loader), SVG
through the sanitiser and librsvg, PDF through pdfium. Every path ends as a pyvips image made
by `thumbnail`, so downscales shrink on load where the codec allows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pillow_heif
import pyvips
from PIL import Image

from mesh.errors import MeshError, Reason
from services.image import gifcanvas, pdfpage, pillowload, svgimages, svgsafe, svgsize
from services.image.limits import ImageLimits, check_source
from services.image.resize import UNBOUNDED, Plan, per_page

# libvips refuses its "untrusted" loaders (matload, fits, magick...): only the ones named here run.
pyvips.block_untrusted_set(True)
# libvips counts librsvg as untrusted; SVG reaches it only as a sanitised buffer (svgsafe).
pyvips.operation_block_set("VipsForeignLoadSvg", False)
# The worker process lives for one job: an operation cache only holds memory.
pyvips.cache_set_max(0)
pillow_heif.register_heif_opener()

# The libvips loader each sniffed format must be read by; anything else is a mislabelled file.
VIPS_LOADERS = {
    "jpg": "jpegload",
    "png": "pngload",
    "webp": "webpload",
    "avif": "heifload",
    "gif": "gifload",
    "tiff": "tiffload",
}
VIPS_FORMATS = frozenset(VIPS_LOADERS)
PILLOW_FORMATS = frozenset({"heif", "bmp", "ico"})
ANIMATED_FORMATS = frozenset({"gif", "webp"})
INPUT_FORMATS = VIPS_FORMATS | PILLOW_FORMATS | {"svg", "pdf"}
# Orientations 5-8 swap width and height once applied.
_TRANSPOSING = frozenset({5, 6, 7, 8})


def corrupt(what: str = "image") -> MeshError:
    return MeshError(
        Reason.CORRUPT_INPUT,
        f"The {what} could not be decoded: it is damaged, truncated or not what its content "
        "claims to be.",
    )


@dataclass
class Source:
    """A checked input. `frames` is how many frames will be decoded (1 unless animating)."""

    format: str
    width: int
    page_height: int
    frames: int
    orientation: int = 1
    path: Path | None = None
    page: int = 0  # the page read from a multi-page file, of `pages`
    pages: int = 1
    svg: bytes | None = None
    svg_max_scale: float | None = None
    pillow: Image.Image | None = None
    pdf: pdfpage.Page | None = None
    has_icc: bool = False
    bands: int = 3
    cmyk: bool = False
    delays: list[int] = field(default_factory=list)
    loop: int = 0

    def oriented_size(self, auto_orient: bool) -> tuple[int, int]:
        if auto_orient and self.orientation in _TRANSPOSING:
            return self.page_height, self.width
        return self.width, self.page_height

    def load(self, plan: Plan, auto_orient: bool) -> pyvips.Image:
        """The image resized by `plan.thumbnail_*`, oriented, in sRGB (lazy for file sources)."""
        kwargs: dict[str, object] = {
            "height": plan.thumbnail_height,
            "size": plan.size,
            "crop": plan.crop,
            "no_rotate": not auto_orient,
        }
        if self.has_icc:
            kwargs["output_profile"] = "srgb"
        if self.path is not None and self.cmyk:
            image = pyvips.Image.new_from_file(self._file(), access="sequential")
            # thumbnail's own CMYK import is relative-colourimetric, which turns a CMYK
            # profile's rich black into dark grey; perceptual maps it to sRGB black.
            image = image.icc_transform(
                "srgb", intent="perceptual", embedded=True, input_profile="cmyk"
            )
            kwargs.pop("output_profile", None)
            return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **kwargs)
        if self.path is not None and self.frames > 1:
            return self._load_animation(plan, kwargs)
        if self.path is not None:
            return pyvips.Image.thumbnail(self._file(), plan.thumbnail_width, **kwargs)
        if self.svg is not None and self.svg_max_scale is None:
            return pyvips.Image.thumbnail_buffer(self.svg, plan.thumbnail_width, **kwargs)
        if self.svg is not None:
            scale = min(self._scale_for(plan), self.svg_max_scale or 1.0)
            image = pyvips.Image.svgload_buffer(self.svg, scale=scale)
        elif self.pdf is not None:
            image = self.pdf.render(plan.thumbnail_width, plan.thumbnail_height)
        else:
            assert self.pillow is not None
            image = self._from_pillow(auto_orient)
            if self.frames > 1:
                return self._load_animation(plan, kwargs, image)
        kwargs["no_rotate"] = True
        return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **kwargs)

    def _file(self) -> str:
        return f"{self.path}[page={self.page}]" if self.page else str(self.path)

    def _scale_for(self, plan: Plan) -> float:
        """The scale `plan` asks of the source, for loaders that take one."""
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

    def _from_pillow(self, auto_orient: bool) -> pyvips.Image:
        assert self.pillow is not None
        try:
            if self.frames > 1:
                return pillowload.to_vips_strip(self.pillow, self.frames)
            return pillowload.to_vips(self.pillow, auto_orient)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise corrupt() from error

    def _load_animation(
        self, plan: Plan, kwargs: dict[str, object], strip: pyvips.Image | None = None
    ) -> pyvips.Image:
        # thumbnail would crop the whole strip of frames as one picture: scale it to cover,
        # then crop each frame.
        width = plan.thumbnail_width
        if plan.crop == "centre":
            scale = max(plan.width / self.width, plan.height / self.page_height)
            width = max(plan.width, round(self.width * scale))
            kwargs = {**kwargs, "crop": "none", "height": UNBOUNDED}
        if strip is None:
            image = pyvips.Image.thumbnail(f"{self.path}[n=-1]", width, **kwargs)
        else:
            image = pyvips.Image.thumbnail_image(strip, width, **{**kwargs, "no_rotate": True})
        if plan.crop != "centre":
            return image
        page_height = image.get("page-height")
        left = (image.width - plan.width) // 2
        top = (page_height - plan.height) // 2
        return per_page(
            image.copy_memory(),
            self.frames,
            lambda page: page.crop(left, top, plan.width, plan.height),
        )


def open_source(
    path: Path, source_format: str, limits: ImageLimits, animate: bool, page: int = 0
) -> Source:
    """Reads the header of `path` (its `page`, for multi-page TIFF) and checks it against
    `limits` before anything is decoded. `animate` asks for every frame of an animation."""
    if source_format not in INPUT_FORMATS:
        raise MeshError(
            Reason.UNSUPPORTED_FORMAT,
            f"'{source_format or 'unknown'}' files are not supported as image input.",
            format=source_format,
        )
    if source_format == "png" and animate and pillowload.is_apng(path):
        return _open_pillow(path, source_format, limits, animate)
    if source_format == "tiff" and pillowload.tiff_needs_pillow(path):
        return _open_pillow(path, source_format, limits, animate=False)
    if source_format in VIPS_FORMATS:
        try:
            return _open_vips(path, source_format, limits, animate, page)
        except MeshError as error:
            if source_format != "avif" or error.reason is not Reason.CORRUPT_INPUT:
                raise
            # An AVIF image sequence: the wheel's libheif reads still items only.
            return _open_pillow(path, source_format, limits, animate)
    if source_format in PILLOW_FORMATS:
        return _open_pillow(path, source_format, limits, animate=False)
    if source_format == "svg":
        data, header = _open_svg(path)
        check_source(header.width, header.height, 1, limits)
        bound = svgsize.max_scale(data, header.width, header.height)
        return Source("svg", header.width, header.height, 1, svg=data, svg_max_scale=bound)
    first = pdfpage.open_first_page(path, limits)
    return Source("pdf", first.width, first.height, 1, pdf=first)


def _open_svg(path: Path) -> tuple[bytes, pyvips.Image]:
    data = svgsize.without_bad_size(svgimages.decodable(svgsafe.sanitise(path.read_bytes())))
    try:
        return data, pyvips.Image.svgload_buffer(data)
    except pyvips.Error:
        data = svgsize.with_default_size(data)
    try:
        return data, pyvips.Image.svgload_buffer(data)
    except pyvips.Error as error:
        raise corrupt("SVG") from error


def _open_vips(
    path: Path, source_format: str, limits: ImageLimits, animate: bool, page: int
) -> Source:
    if source_format == "gif":
        _check_gif_canvas(path, limits)
    try:
        header = pyvips.Image.new_from_file(
            str(path), access="sequential", **({"page": page} if page else {})
        )
    except pyvips.Error as error:
        raise corrupt() from error
    fields = set(header.get_fields())
    if header.get("vips-loader") != VIPS_LOADERS[source_format]:
        raise corrupt()
    pages = header.get("n-pages") if "n-pages" in fields else 1
    frames = pages if animate and source_format in ANIMATED_FORMATS and pages > 1 else 1
    check_source(header.width, header.height, frames, limits)
    source = Source(
        source_format,
        header.width,
        header.height,
        frames,
        orientation=_orientation(header, fields),
        path=path,
        page=page,
        pages=pages,
        has_icc="icc-profile-data" in fields,
        bands=header.bands,
        cmyk=header.interpretation == "cmyk",
    )
    if frames > 1:
        source.loop = header.get("loop") if "loop" in fields else 0
        source.delays = list(header.get("delay")) if "delay" in fields else []
    return source


def _check_gif_canvas(path: Path, limits: ImageLimits) -> None:
    width, height = gifcanvas.declared_canvas(path)
    if width and height:
        check_source(width, height, 1, limits)


def _orientation(image: pyvips.Image, fields: set[str]) -> int:
    value = image.get("orientation") if "orientation" in fields else 1
    return value if 1 <= value <= 8 else 1


def _open_pillow(path: Path, source_format: str, limits: ImageLimits, animate: bool) -> Source:
    try:
        image = Image.open(path)
        declared = getattr(image, "n_frames", 1)
        frames = declared if animate and declared > 1 else 1
        check_source(image.width, image.height, frames, limits)
        if source_format == "ico":
            # The directory may declare a small icon whose embedded PNG is a huge canvas.
            image.load()
            check_source(image.width, image.height, 1, limits)
    except Image.DecompressionBombError as error:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The image declares more than {limits.max_pixels} pixels.",
            max_pixels=limits.max_pixels,
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise corrupt() from error
    # libheif applies HEIF's own rotation on decode and BMP/ICO carry no EXIF; Pillow's AVIF
    # reader reports irot/imir as an EXIF orientation it leaves to the caller.
    orientation = image.getexif().get(0x0112, 1) if source_format == "avif" else 1
    return Source(
        source_format,
        image.width,
        image.height,
        frames,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        pillow=image,
        has_icc="icc_profile" in image.info,
    )
