"""PDF input: the first page, rendered by pdfium at a fixed resolution after a size check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pyvips

from mesh.errors import MeshError, Reason
from services.image.limits import ImageLimits, check_source

RENDER_DPI = 150
_POINTS_PER_INCH = 72


@dataclass
class Page:
    document: pdfium.PdfDocument
    width: int
    height: int

    def render(self, box_width: int, box_height: int) -> pyvips.Image:
        """The page at RENDER_DPI, or smaller when the box is smaller (vector scaling is free)."""
        page = self.document[0]
        scale = RENDER_DPI / _POINTS_PER_INCH
        shrink = min(1.0, box_width / self.width, box_height / self.height)
        try:
            bitmap = page.render(scale=scale * shrink, fill_color=(255, 255, 255, 255))
            rendered = bitmap.to_pil().convert("RGB")
        except pdfium.PdfiumError as error:
            raise MeshError(Reason.CORRUPT_INPUT, "The PDF page could not be rendered.") from error
        image = pyvips.Image.new_from_memory(
            rendered.tobytes(), rendered.width, rendered.height, 3, "uchar"
        )
        return image.copy(interpretation="srgb")


def open_first_page(path: Path, limits: ImageLimits) -> Page:
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            raise MeshError(
                Reason.PASSWORD_REQUIRED, "The PDF is encrypted; a password is required."
            ) from error
        raise MeshError(Reason.CORRUPT_INPUT, "The PDF could not be opened.") from error
    if len(document) == 0:
        raise MeshError(Reason.CORRUPT_INPUT, "The PDF has no pages.")
    points_w, points_h = document[0].get_size()
    scale = RENDER_DPI / _POINTS_PER_INCH
    width, height = max(1, round(points_w * scale)), max(1, round(points_h * scale))
    check_source(width, height, 1, limits)
    return Page(document, width, height)
