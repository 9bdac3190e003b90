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
        width_pt, height_pt = image.width * POINTS_PER_PIXEL, image.height * POINTS_PER_PIXEL
        page = document.new_page(width_pt, height_pt)
        picture = pdfium.PdfImage.new(document)
        if passthrough is not None:
            picture.load_jpeg(str(passthrough), pages=[page], inline=True)
        else:
            jpeg = encode.to_8bit_srgb(image).jpegsave_buffer(Q=quality, keep=0)
            picture.load_jpeg(io.BytesIO(jpeg), pages=[page], inline=True)
        picture.set_matrix(pdfium.PdfMatrix().scale(width_pt, height_pt))
        page.insert_obj(picture)
        page.gen_content()
    document.save(str(output))
    return None if passthrough is not None else quality
