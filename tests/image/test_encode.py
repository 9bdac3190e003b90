from __future__ import annotations

from pathlib import Path

import pillow_heif
import pytest
import pyvips

from mesh.options import ConversionOptions
from services.image.encode import ENCODERS, quality_for
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference


@pytest.mark.parametrize(
    ("target", "compression", "quality"),
    [
        ("jpg", 82, 82),
        ("webp", 1, 1),
        ("avif", 82, 64),
        ("avif", 75, 50),
        ("avif", 100, 100),
        ("heif", 30, 20),
        ("png", 82, None),
        ("gif", 82, None),
        ("tiff", 82, None),
    ],
)
def test_compression_maps_to_each_encoders_quality(
    target: str, compression: int, quality: int | None
) -> None:
    assert quality_for(target, compression) == quality


def test_every_encoder_has_a_mime_type() -> None:
    assert all(encoder.mime_type.startswith("image/") for encoder in ENCODERS.values())


def test_heif_output_is_hevc_and_decodes_to_the_same_picture(tmp_path: Path) -> None:
    output = tmp_path / "out.heif"
    outcome = convert(
        CORPUS / "pillow" / "hopper.jpg",
        output,
        "jpg",
        ConversionOptions(format="heif"),
        ImageLimits(),
    )
    header = pyvips.Image.new_from_file(str(output))
    assert (header.width, header.height) == (128, 128)
    assert header.get("heif-compression") == "hevc"
    decoded = pillow_heif.open_heif(output).to_pillow()
    assert mean_difference(decoded, CORPUS / "pillow" / "hopper.jpg") < 12.0
    assert outcome.applied_quality == 64
