"""Opening a source: read its header, check the limits, and only then decode pixels.

libvips reads jpg/png/webp/avif/gif/tiff itself (header-only opens are lazy). HEVC HEIF, BMP
and ICO go through Pillow (the libvips wheel has no HEVC decoder, BMP or ICO loader), SVG
through the sanitiser and librsvg, PDF through pdfium. What is found is one of the `sources`
types, which loads the pixels when the pipeline asks.
"""

from __future__ import annotations

from pathlib import Path

import pillow_heif
import pyvips
from PIL import Image

from mesh.errors import MeshError, Reason
from services.image import gifcanvas, pdfpage, pillowload, svgimages, svgsafe, svgsize
from services.image.limits import ImageLimits, check_source
from services.image.sources import (
    PdfDocument,
    PillowImage,
    Source,
    SvgDocument,
    VipsFile,
    corrupt,
)

# libvips refuses its "untrusted" loaders (matload, fits, magick...): only the ones named here run.
pyvips.block_untrusted_set(True)
# libvips counts librsvg as untrusted; SVG reaches it only as a sanitised buffer (svgsafe).
pyvips.operation_block_set("VipsForeignLoadSvg", False)
# A pooled sandbox process runs many conversions: an operation cache would only hold memory
# and keep earlier tasks' files open.
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
        return SvgDocument(
            format="svg", width=header.width, page_height=header.height, data=data, max_scale=bound
        )
    first = pdfpage.open_first_page(path, limits)
    return PdfDocument(format="pdf", width=first.width, page_height=first.height, page=first)


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
    if header.get("vips-loader") != VIPS_LOADERS[source_format]:
        raise corrupt()
    pages = header.get("n-pages") if has_field(header, "n-pages") else 1
    frames = pages if animate and source_format in ANIMATED_FORMATS and pages > 1 else 1
    check_source(header.width, header.height, frames, limits)
    return VipsFile(
        format=source_format,
        width=header.width,
        page_height=header.height,
        frames=frames,
        orientation=_orientation(header),
        path=path,
        page=page,
        pages=pages,
        has_icc=has_field(header, "icc-profile-data"),
        bands=header.bands,
        cmyk=header.interpretation == "cmyk",
    )


def _check_gif_canvas(path: Path, limits: ImageLimits) -> None:
    width, height = gifcanvas.declared_canvas(path)
    if width and height:
        check_source(width, height, 1, limits)


def has_field(image: pyvips.Image, name: str) -> bool:
    """Whether the image carries metadata `name`: one lookup, where `get_fields()` lists every
    field through cffi (150 us on a photo's header, each call)."""
    return bool(image.get_typeof(name))


def _orientation(image: pyvips.Image) -> int:
    value = image.get("orientation") if has_field(image, "orientation") else 1
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
    return PillowImage(
        format=source_format,
        width=image.width,
        page_height=image.height,
        frames=frames,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        image=image,
        has_icc="icc_profile" in image.info,
    )
