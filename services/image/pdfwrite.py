"""PDF output: one page per frame (or per TIFF page, each at its own size), each page a JPEG
image at 96 px per inch.

A JPEG source the pipeline would not change is embedded as it is (no second lossy pass);
everything else is encoded to JPEG at the request's quality, alpha already flattened onto
white by the pipeline.
"""

from __future__ import annotations

import io
from pathlib import Path

import pypdfium2 as pdfium
import pyvips

from services.image import encode

POINTS_PER_PIXEL = 72 / 96


def frames_of(image: pyvips.Image, frames: int) -> list[pyvips.Image]:
    """The frames of a strip of `frames` equal frames."""
    if frames == 1:
        return [image]
    image = image.copy_memory()
    height = image.height // frames
    return [image.crop(0, index * height, image.width, height) for index in range(frames)]


def write(
    pages: list[pyvips.Image],
    output: Path,
    compression: int,
    passthrough: Path | None,
) -> int | None:
    """Writes the PDF; returns the JPEG quality applied, None when the source was embedded."""
    quality = encode.quality_for("jpg", compression)
    document = pdfium.PdfDocument.new()
    for image in pages:
        add_page(document, image, quality, passthrough)
    document.save(str(output))
    return None if passthrough is not None else quality


def add_page(
    document: pdfium.PdfDocument,
    image: pyvips.Image,
    quality: int | None,
    passthrough: Path | None,
    *,
    page_size: tuple[float, float] | None = None,
    margin: float = 0.0,
) -> None:
    """One page showing `image` (or the JPEG file `passthrough`, as it is): a page of the
    image's own size at 96 px per inch, or centred inside `page_size` points and `margin`."""
    width_pt, height_pt = image.width * POINTS_PER_PIXEL, image.height * POINTS_PER_PIXEL
    if page_size is None:
        page_w, page_h, scale = width_pt, height_pt, 1.0
    else:
        page_w, page_h = page_size
        scale = min((page_w - 2 * margin) / width_pt, (page_h - 2 * margin) / height_pt)
    shown_w, shown_h = width_pt * scale, height_pt * scale
    page = document.new_page(page_w, page_h)
    picture = pdfium.PdfImage.new(document)
    if passthrough is not None:
        picture.load_jpeg(str(passthrough), pages=[page], inline=True)
    else:
        jpeg = encode.to_8bit_srgb(image).jpegsave_buffer(Q=quality or 90, keep=0)
        picture.load_jpeg(io.BytesIO(jpeg), pages=[page], inline=True)
    matrix = pdfium.PdfMatrix().scale(shown_w, shown_h)
    picture.set_matrix(matrix.translate((page_w - shown_w) / 2, (page_h - shown_h) / 2))
    page.insert_obj(picture)
    page.gen_content()
