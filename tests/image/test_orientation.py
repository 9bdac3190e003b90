from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference, orientation_tag

EXAMPLES = CORPUS / "exif-orientation-examples"
# JPEG re-encoding and the odd-pixel offset of flips leave a little noise; a wrong rotation
# gives differences around 40-60.
UPRIGHT_TOLERANCE = 6.0


def _convert(name: str, target: str, out: Path, **options: object) -> Path:
    path = out / f"{name}.{target}"
    convert(
        EXAMPLES / f"{name}.jpg",
        path,
        "jpg",
        ConversionOptions(format=target, **options),  # type: ignore[arg-type]
        ImageLimits(),
    )
    return path


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("references")
    return {
        (kind, target): _convert(f"{kind}_1", target, out)
        for kind in ("Landscape", "Portrait")
        for target in ("jpg", "png")
    }


def test_landscape_6_becomes_upright_1800x1200_jpeg_without_rotation_tag(
    tmp_path: Path, references: dict[tuple[str, str], Path]
) -> None:
    path = tmp_path / "out.jpg"
    outcome = convert(
        EXAMPLES / "Landscape_6.jpg",
        path,
        "jpg",
        ConversionOptions(format="jpg", compression=82, resize="original", auto_orient=True),
        ImageLimits(),
    )
    assert (outcome.width, outcome.height) == (1800, 1200)
    assert outcome.applied_quality == 82
    assert Image.open(path).format == "JPEG"
    assert Image.open(path).size == (1800, 1200)
    assert orientation_tag(path) == 1
    assert mean_difference(path, references[("Landscape", "jpg")]) < UPRIGHT_TOLERANCE


@pytest.mark.parametrize("target", ["jpg", "png"])
@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
@pytest.mark.parametrize("value", range(9))
def test_every_orientation_comes_out_upright(
    tmp_path: Path,
    references: dict[tuple[str, str], Path],
    kind: str,
    value: int,
    target: str,
) -> None:
    path = _convert(f"{kind}_{value}", target, tmp_path)
    expected = (1800, 1200) if kind == "Landscape" else (1200, 1800)
    assert Image.open(path).size == expected
    assert orientation_tag(path) == 1
    assert mean_difference(path, references[(kind, target)]) < UPRIGHT_TOLERANCE


def test_auto_orient_false_keeps_stored_pixels_and_tag(tmp_path: Path) -> None:
    path = _convert("Landscape_6", "jpg", tmp_path, auto_orient=False)
    stored = Image.open(EXAMPLES / "Landscape_6.jpg")
    assert Image.open(path).size == stored.size == (1200, 1800)
    assert orientation_tag(path) == 6
    assert mean_difference(path, stored) < 3.0


def test_wrong_orientation_is_detected_by_the_comparison(
    references: dict[tuple[str, str], Path],
) -> None:
    upright = Image.open(references[("Landscape", "jpg")])
    assert mean_difference(upright.rotate(180), upright) > 4 * UPRIGHT_TOLERANCE
