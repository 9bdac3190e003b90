from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions, Mode
from services.image.pipeline import ImageLimits, convert
from services.image.targetsize import MAX_ENCODES
from tests.corpus import CORPUS

PHOTO = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"


def _target(tmp_path: Path, target: str, target_bytes: int, resize: str = "original") -> Path:
    output = tmp_path / f"out.{target}"
    options = ConversionOptions(
        format=target, mode=Mode.TARGET_SIZE, target_bytes=target_bytes, resize=resize
    )
    outcome = convert(
        PHOTO,
        output,
        "jpg",
        options,
        ImageLimits(),
    )
    assert output.stat().st_size <= target_bytes
    assert Image.open(output).size == (outcome.width, outcome.height)
    return output


@pytest.mark.parametrize("target", ["jpg", "webp"])
def test_quality_is_lowered_to_fit_and_reported(tmp_path: Path, target: str) -> None:
    output = tmp_path / f"out.{target}"
    outcome = convert(
        PHOTO,
        output,
        "jpg",
        ConversionOptions(
            format=target, mode=Mode.TARGET_SIZE, target_bytes=25_000, resize="email"
        ),
        ImageLimits(),
    )
    assert output.stat().st_size <= 25_000
    assert outcome.applied_quality is not None and outcome.applied_quality < 82
    assert (outcome.width, outcome.height) == (600, 400)


def test_a_small_target_scales_the_image_down(tmp_path: Path) -> None:
    output = _target(tmp_path, "jpg", 8_000)
    assert Image.open(output).width < 1800


def test_a_generous_target_keeps_the_requested_quality(tmp_path: Path) -> None:
    outcome = convert(
        PHOTO,
        tmp_path / "out.jpg",
        "jpg",
        ConversionOptions(format="jpg", mode=Mode.TARGET_SIZE, target_bytes=10_000_000),
        ImageLimits(),
    )
    assert outcome.applied_quality == 82


def test_png_fits_by_palette_and_scale(tmp_path: Path) -> None:
    output = _target(tmp_path, "png", 150_000, resize="email")
    assert Image.open(output).mode == "P" or Image.open(output).width < 600


def test_unreachable_target_reports_the_smallest_size(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        convert(
            PHOTO,
            tmp_path / "out.webp",
            "jpg",
            ConversionOptions(
                format="webp", mode=Mode.TARGET_SIZE, target_bytes=50, resize="email"
            ),
            ImageLimits(),
        )
    assert caught.value.reason is Reason.TARGET_UNREACHABLE
    assert caught.value.detail["smallest_bytes"] > 50
    assert str(caught.value.detail["smallest_bytes"]) in caught.value.message
    assert not list(tmp_path.iterdir())


def test_the_search_is_bounded() -> None:
    assert MAX_ENCODES <= 8
