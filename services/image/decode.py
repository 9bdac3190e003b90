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
from PIL import Image, ImageOps

from mesh.errors import MeshError, Reason
from services.image import gifcanvas, pdfpage, svgsafe
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
    svg: bytes | None = None
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
            image = pyvips.Image.new_from_file(str(self.path), access="sequential")
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
            return pyvips.Image.thumbnail(str(self.path), plan.thumbnail_width, **kwargs)
        if self.svg is not None:
            return pyvips.Image.thumbnail_buffer(self.svg, plan.thumbnail_width, **kwargs)
        if self.pdf is not None:
            image = self.pdf.render(plan.thumbnail_width, plan.thumbnail_height)
        else:
            assert self.pillow is not None
            image = _from_pillow(self.pillow, auto_orient)
        kwargs["no_rotate"] = True
        return pyvips.Image.thumbnail_image(image, plan.thumbnail_width, **kwargs)

    def _load_animation(self, plan: Plan, kwargs: dict[str, object]) -> pyvips.Image:
        # thumbnail would crop the whole strip of frames as one picture: scale it to cover,
        # then crop each frame.
        width = plan.thumbnail_width
        if plan.crop == "centre":
            scale = max(plan.width / self.width, plan.height / self.page_height)
            width = max(plan.width, round(self.width * scale))
            kwargs = {**kwargs, "crop": "none", "height": UNBOUNDED}
        image = pyvips.Image.thumbnail(f"{self.path}[n=-1]", width, **kwargs)
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


def open_source(path: Path, source_format: str, limits: ImageLimits, animate: bool) -> Source:
    """Reads the header of `path` and checks it against `limits` before anything is decoded."""
    if source_format not in INPUT_FORMATS:
        raise MeshError(
            Reason.UNSUPPORTED_FORMAT,
            f"'{source_format or 'unknown'}' files are not supported as image input.",
            format=source_format,
        )
    if source_format in VIPS_FORMATS:
        return _open_vips(path, source_format, limits, animate)
    if source_format in PILLOW_FORMATS:
        return _open_pillow(path, source_format, limits)
    if source_format == "svg":
        data = svgsafe.sanitise(path.read_bytes())
        try:
            header = pyvips.Image.svgload_buffer(data)
        except pyvips.Error as error:
            raise corrupt("SVG") from error
        check_source(header.width, header.height, 1, limits)
        return Source("svg", header.width, header.height, 1, svg=data)
    page = pdfpage.open_first_page(path, limits)
    return Source("pdf", page.width, page.height, 1, pdf=page)


def _open_vips(path: Path, source_format: str, limits: ImageLimits, animate: bool) -> Source:
    if source_format == "gif":
        _check_gif_canvas(path, limits)
    try:
        header = pyvips.Image.new_from_file(str(path), access="sequential")
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


def _open_pillow(path: Path, source_format: str, limits: ImageLimits) -> Source:
    try:
        image = Image.open(path)
        check_source(image.width, image.height, 1, limits)
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
    # libheif applies HEIF's own rotation on decode; BMP and ICO carry no EXIF.
    return Source(
        source_format,
        image.width,
        image.height,
        1,
        pillow=image,
        has_icc="icc_profile" in image.info,
    )


def _from_pillow(image: Image.Image, auto_orient: bool) -> pyvips.Image:
    try:
        image.load()
        if auto_orient:
            image = ImageOps.exif_transpose(image)
        icc = image.info.get("icc_profile")
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        mode = "RGBA" if has_alpha else "RGB"
        if image.mode in ("L", "LA"):
            mode = image.mode
        converted = image.convert(mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise corrupt() from error
    vips_image = pyvips.Image.new_from_memory(
        converted.tobytes(), converted.width, converted.height, len(mode), "uchar"
    )
    vips_image = vips_image.copy(interpretation="b-w" if mode.startswith("L") else "srgb")
    if icc:
        vips_image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return vips_image
