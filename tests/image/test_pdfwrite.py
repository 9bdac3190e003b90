from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from mesh.errors import MeshError, Reason
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


# A6 page set: a multi-page TIFF becomes one PDF page per TIFF page, each at its own size;
# every other output takes page 0.
def test_multipage_tiff_gives_every_page_to_pdf_at_its_own_size(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "multipage.tiff"
    output = tmp_path / "out.pdf"
    convert(source, output, "tiff", ConversionOptions(format="pdf"), ImageLimits())
    document = pdfium.PdfDocument(output)
    sizes = [(round(page.get_width() / 0.75), round(page.get_height() / 0.75)) for page in document]
    assert sizes == [(10, 10), (10, 10), (20, 20)]
    stored = Image.open(source)
    for index, page in enumerate(document):
        stored.seek(index)
        rendered = page.render(scale=1 / 0.75).to_pil()
        assert mean_difference(rendered, stored.convert("RGB")) < 12.0


def test_multipage_tiff_gives_page_zero_to_other_outputs(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "multipage.tiff"
    output = tmp_path / "out.gif"
    outcome = convert(source, output, "tiff", ConversionOptions(format="gif"), ImageLimits())
    decoded = Image.open(output)
    assert getattr(decoded, "n_frames", 1) == 1
    assert decoded.size == (outcome.width, outcome.height) == (10, 10)
    assert mean_difference(decoded, Image.open(source).convert("RGB")) < 3.0


def test_multipage_tiff_pages_count_against_the_frame_limit(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        convert(
            CORPUS / "pillow" / "multipage.tiff",
            tmp_path / "out.pdf",
            "tiff",
            ConversionOptions(format="pdf"),
            ImageLimits(max_frames=2),
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
