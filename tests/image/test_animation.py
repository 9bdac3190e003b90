from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference

ANIMATIONS = [("iss634.gif", "gif"), ("iss634.webp", "webp")]


def _timeline(path: Path) -> list[int]:
    image = Image.open(path)
    durations = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
        durations.append(int(image.info.get("duration", 0)))
    return durations


@pytest.mark.parametrize(("name", "source_format"), ANIMATIONS)
@pytest.mark.parametrize("target", ["gif", "webp"])
def test_animation_keeps_frames_durations_and_loop(
    tmp_path: Path, name: str, source_format: str, target: str
) -> None:
    source = CORPUS / "pillow" / name
    output = tmp_path / f"out.{target}"
    outcome = convert(
        source, output, source_format, ConversionOptions(format=target), ImageLimits()
    )
    expected, actual = _timeline(source), _timeline(output)
    assert len(actual) == len(expected) == 42
    # A zero delay is shown as 100 ms by browsers, and webp writes it that way.
    assert all(abs(a - e) <= 10 for a, e in zip(actual, expected, strict=True) if e > 0)
    assert Image.open(output).info.get("loop", 0) == Image.open(source).info.get("loop", 0)
    assert (outcome.width, outcome.height) == Image.open(source).size


def test_cover_crops_each_frame_of_an_animation(tmp_path: Path) -> None:
    output = tmp_path / "out.webp"
    outcome = convert(
        CORPUS / "pillow" / "iss634.gif",
        output,
        "gif",
        ConversionOptions(format="webp", resize="square", resize_width=120),
        ImageLimits(),
    )
    decoded = Image.open(output)
    assert decoded.size == (outcome.width, outcome.height) == (120, 120)
    assert getattr(decoded, "n_frames", 1) == 42


@pytest.mark.parametrize(("name", "source_format"), ANIMATIONS)
def test_still_output_takes_the_first_frame(tmp_path: Path, name: str, source_format: str) -> None:
    source = CORPUS / "pillow" / name
    output = tmp_path / "out.png"
    convert(source, output, source_format, ConversionOptions(format="png"), ImageLimits())
    first = Image.open(source)
    first.seek(0)
    assert getattr(Image.open(output), "n_frames", 1) == 1
    assert mean_difference(output, first.convert("RGB")) < 3.0


def test_pdf_output_has_one_page_per_frame(tmp_path: Path) -> None:
    output = tmp_path / "out.pdf"
    convert(
        CORPUS / "pillow" / "iss634.gif",
        output,
        "gif",
        ConversionOptions(format="pdf"),
        ImageLimits(),
    )
    assert len(pdfium.PdfDocument(output)) == 42
