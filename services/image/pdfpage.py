"""PDF input: a page (the first, for conversions), rendered by pdfium after a size check."""

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
    width: int  # at RENDER_DPI
    height: int
    index: int = 0

    def render(self, box_width: int, box_height: int) -> pyvips.Image:
        """The page at RENDER_DPI, or smaller when the box is smaller (vector scaling is free)."""
        shrink = min(1.0, box_width / self.width, box_height / self.height)
        return self.render_at(RENDER_DPI / _POINTS_PER_INCH * shrink)

    def render_at(self, scale: float) -> pyvips.Image:
        """The page at `scale` pixels per point, on white."""
        page = self.document[self.index]
        try:
            bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
            rendered = bitmap.to_pil().convert("RGB")
        except pdfium.PdfiumError as error:
            raise MeshError(Reason.CORRUPT_INPUT, "The PDF page could not be rendered.") from error
        image = pyvips.Image.new_from_memory(
            rendered.tobytes(), rendered.width, rendered.height, 3, "uchar"
        )
        return image.copy(interpretation="srgb")


def open_first_page(path: Path, limits: ImageLimits) -> Page:
    return open_page(path, limits, 0)


def open_page(path: Path, limits: ImageLimits, index: int) -> Page:
    """Page `index` (from 0), its size at RENDER_DPI checked against the limits."""
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
    if index >= len(document):
        raise MeshError(
            Reason.INVALID_FIELD,
            f"The PDF has {len(document)} pages; page {index + 1} does not exist.",
            fields={"page": f"must be from 1 to {len(document)}"},
        )
    points_w, points_h = document[index].get_size()
    scale = RENDER_DPI / _POINTS_PER_INCH
    width, height = max(1, round(points_w * scale)), max(1, round(points_h * scale))
    check_source(width, height, 1, limits)
    return Page(document, width, height, index)
