from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference

# TESTPLAN A3: within 6/255 per channel of the RGB twin.
CMYK_TOLERANCE = 6.0


@pytest.mark.parametrize(
    ("name", "source_format"),
    [
        ("small/png-truncated.png", "png"),
        ("pillow/broken.png", "png"),
        ("pillow/truncated_jpeg.jpg", "jpg"),
        ("pillow/truncated_image.png", "png"),
        ("pillow/truncated_end_chunk.png", "png"),
        ("pillow/broken_data_stream.png", "png"),
        ("pillow/zero_width.gif", "gif"),
        ("pillow/hopper_bad_exif.jpg", "jpg"),
        ("pillow/invalid-exif.jpg", "jpg"),
        ("pillow/truncated_app14.jpg", "jpg"),
        ("pillow/libtiff_segfault.tif", "tiff"),
        ("pillow/seek_too_large.tif", "tiff"),
        ("imgproxy/bmp-invalid-bpp.bmp", "bmp"),
        ("small/heif.heif", "heif"),
        ("small/pdf.pdf", "pdf"),
        ("small/svg.svg", "svg"),
    ],
)
def test_damaged_inputs_fail_as_corrupt_or_decode(
    tmp_path: Path, name: str, source_format: str
) -> None:
    output = tmp_path / "out.png"
    try:
        outcome = convert(
            CORPUS / name, output, source_format, ConversionOptions(format="png"), ImageLimits()
        )
    except MeshError as error:
        assert error.reason is Reason.CORRUPT_INPUT
        assert "/" not in error.message
    else:
        assert Image.open(output).size == (outcome.width, outcome.height)


def test_text_in_place_of_an_image_is_corrupt(tmp_path: Path) -> None:
    source = tmp_path / "not-an-image.jpg"
    source.write_bytes(b"\xff\xd8\xff" + b"hello" * 20)
    with pytest.raises(MeshError) as caught:
        convert(source, tmp_path / "out.png", "jpg", ConversionOptions(format="png"), ImageLimits())
    assert caught.value.reason is Reason.CORRUPT_INPUT
    assert str(tmp_path) not in caught.value.message


@pytest.mark.parametrize(
    ("name", "source_format"),
    [("pil_sample_cmyk.jpg", "jpg"), ("tiff_strip_cmyk_jpeg.tif", "tiff")],
)
def test_cmyk_becomes_srgb_close_to_the_rgb_twin(
    tmp_path: Path, name: str, source_format: str
) -> None:
    output = tmp_path / "out.png"
    convert(
        CORPUS / "pillow" / name,
        output,
        source_format,
        ConversionOptions(format="png"),
        ImageLimits(),
    )
    decoded = Image.open(output)
    assert decoded.mode in ("RGB", "RGBA")
    assert mean_difference(decoded, CORPUS / "pillow" / "pil_sample_rgb.jpg") < CMYK_TOLERANCE


def test_sixteen_bit_rgba_tiff_matches_its_reference(tmp_path: Path) -> None:
    output = tmp_path / "out.png"
    convert(
        CORPUS / "pillow" / "tiff_16bit_RGBa.tiff",
        output,
        "tiff",
        ConversionOptions(format="png"),
        ImageLimits(),
    )
    target = Image.open(CORPUS / "pillow" / "tiff_16bit_RGBa_target.png")
    assert mean_difference(Image.open(output).convert("RGBA").convert("RGB"), target) < 3.0


def test_heif_input_decodes_through_pillow_heif(tmp_path: Path) -> None:
    output = tmp_path / "out.jpg"
    outcome = convert(
        CORPUS / "pillow" / "avif" / "hopper.heif",
        output,
        "heif",
        ConversionOptions(format="jpg"),
        ImageLimits(),
    )
    assert Image.open(output).size == (outcome.width, outcome.height) == (128, 128)
    assert mean_difference(output, CORPUS / "pillow" / "hopper.jpg") < 12.0
