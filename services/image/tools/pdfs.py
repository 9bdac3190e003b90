"""The PDF tools: image-to-pdf (several images, one page each) and pdf-preview (one page of a
PDF as a picture).

image-to-pdf: each image upright, alpha flattened onto white, one page per image in the order
given. `pageSize` auto makes each page the image's own size at 96 px per inch; letter and a4
pages take the image's orientation (landscape images on landscape pages) and show it fitted
inside half-inch margins, centred. A JPEG whose pixels need no change is embedded as it is;
everything else is embedded as a JPEG at quality 90.

pdf-preview: page `page` (from 1) rendered by pdfium straight at `width` px wide (vector
scaling, not an enlarged raster), encoded as `format` at `quality`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pypdfium2 as pdfium
import pyvips

from mesh.errors import MeshError, Reason
from mesh.options import Box, Fit
from mesh.outcome import Outcome
from mesh.tools.params import ImageToPdfParams, PdfPreviewParams
from services.image import encode, pdfpage, pdfwrite
from services.image.limits import ImageLimits, check_output
from services.image.resize import plan
from services.image.sources import Source, VipsFile, corrupt
from services.image.tools.boxes import load, opened, save

PAGE_SIZES = {"letter": (612.0, 792.0), "a4": (595.28, 841.89)}
MARGIN_POINTS = 36.0
EMBED_QUALITY = 90


def _untouched_jpeg(found: Source) -> bool:
    """A JPEG the page would show unchanged: embedded as it is, no second lossy encode."""
    return (
        isinstance(found, VipsFile)
        and found.format == "jpg"
        and found.bands in (1, 3)
        and not found.has_icc
        and found.orientation == 1
    )


def image_to_pdf(
    sources: Sequence[tuple[Path, str]],
    output: Path,
    params: ImageToPdfParams,
    limits: ImageLimits,
) -> Outcome:
    if not sources:
        raise MeshError(
            Reason.INVALID_FIELD, "At least one image is needed.", fields={"files": "is required"}
        )
    found = [opened(path, fmt, limits) for path, fmt in sources]  # every header before decoding
    document = pdfium.PdfDocument.new()
    first: tuple[int, int] | None = None
    try:
        for (path, _), source in zip(sources, found, strict=True):
            image = load(
                source, plan(Box(None, None, Fit.NONE), *source.oriented_size(True)), "pdf", limits
            )
            first = first or (image.width, image.height)
            passthrough = path if _untouched_jpeg(source) else None
            size = PAGE_SIZES.get(params.page_size)
            if size is not None and image.width > image.height:
                size = (size[1], size[0])
            margin = MARGIN_POINTS if size is not None else 0.0
            pdfwrite.add_page(
                document, image, EMBED_QUALITY, passthrough, page_size=size, margin=margin
            )
        document.save(str(output))
    except pyvips.Error as error:
        output.unlink(missing_ok=True)
        raise corrupt() from error
    assert first is not None
    return Outcome("pdf", "application/pdf", first[0], first[1], applied_quality=EMBED_QUALITY)


def pdf_preview(
    source: Path, output: Path, source_format: str, params: PdfPreviewParams, limits: ImageLimits
) -> Outcome:
    if source_format != "pdf":
        raise MeshError(
            Reason.UNSUPPORTED_PAIR, "pdf-preview takes a PDF file.", format=source_format
        )
    page = pdfpage.open_page(source, limits, params.page - 1)
    scale = params.width / page.width * (pdfpage.RENDER_DPI / 72)
    height = max(1, round(page.height * params.width / page.width))
    check_output(params.width, height, 1, limits)
    try:
        image = page.render_at(scale)
        quality = save(image, output, params.format, params.quality)
    except pyvips.Error as error:
        raise corrupt("PDF page") from error
    mime = encode.ENCODERS[params.format].mime_type
    return Outcome(params.format, mime, image.width, image.height, applied_quality=quality)
