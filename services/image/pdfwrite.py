"""PDF output: one page per frame, each page a JPEG image at 96 px per inch.

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


def write(
    image: pyvips.Image,
    output: Path,
    frames: int,
    compression: int,
    passthrough: Path | None,
) -> int | None:
    """Writes the PDF; returns the JPEG quality applied, None when the source was embedded."""
    quality = encode.quality_for("jpg", compression)
    page_height = image.height // frames
    width_pt, height_pt = image.width * POINTS_PER_PIXEL, page_height * POINTS_PER_PIXEL
    if frames > 1:
        image = image.copy_memory()
    document = pdfium.PdfDocument.new()
    for index in range(frames):
        page = document.new_page(width_pt, height_pt)
        picture = pdfium.PdfImage.new(document)
        if passthrough is not None:
            picture.load_jpeg(str(passthrough), pages=[page], inline=True)
        else:
            frame = image.crop(0, index * page_height, image.width, page_height)
            jpeg = encode.to_8bit_srgb(frame).jpegsave_buffer(Q=quality, keep=0)
            picture.load_jpeg(io.BytesIO(jpeg), pages=[page], inline=True)
        picture.set_matrix(pdfium.PdfMatrix().scale(width_pt, height_pt))
        page.insert_obj(picture)
        page.gen_content()
    document.save(str(output))
    return None if passthrough is not None else quality
