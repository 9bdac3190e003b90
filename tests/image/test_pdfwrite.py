from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium

from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference


def test_untouched_jpeg_is_embedded_without_reencoding(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "hopper.jpg"
    output = tmp_path / "out.pdf"
    outcome = convert(source, output, "jpg", ConversionOptions(format="pdf"), ImageLimits())
    assert source.read_bytes() in output.read_bytes()
    assert outcome.applied_quality is None
    assert len(pdfium.PdfDocument(output)) == 1


def test_png_page_renders_back_to_the_picture(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "hopper.png"
    output = tmp_path / "out.pdf"
    outcome = convert(source, output, "png", ConversionOptions(format="pdf"), ImageLimits())
    page = pdfium.PdfDocument(output)[0]
    rendered = page.render(scale=128 / page.get_width()).to_pil()
    assert rendered.size == (128, 128)
    assert mean_difference(rendered, source) < 12.0
    assert outcome.applied_quality == 82


def test_pdf_input_renders_its_first_page(tmp_path: Path) -> None:
    output = tmp_path / "out.png"
    outcome = convert(
        CORPUS / "small" / "pdf.pdf", output, "pdf", ConversionOptions(format="png"), ImageLimits()
    )
    assert outcome.width is not None and outcome.width > 100
