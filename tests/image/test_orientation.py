from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat

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


# A2: the other containers. Orientation is read where browsers read it: EXIF in JPEG, WebP,
# PNG eXIf and TIFF, and HEIF/AVIF irot/imir. XMP tiff:Orientation and ImageMagick's
# "Raw profile type exif" text chunk are not honoured (browsers ignore them too, and
# xmp_tags_orientation.png stores its pixels upright: they match the AVIF twin, which has no
# rotation); the output carries no orientation other than 1 in any of them.
PILLOW = CORPUS / "pillow"
# hopper is 128x128: JPEG re-encoding measures ~2-4, a wrong flip or rotation 25-50.
HOPPER_TOLERANCE = 8.0


def _upright(source: Path, source_format: str, out: Path, target: str = "png") -> Image.Image:
    path = out / f"{source.name}.{target}"
    convert(source, path, source_format, ConversionOptions(format=target), ImageLimits())
    assert orientation_tag(path) == 1
    return Image.open(path)


@pytest.mark.parametrize(
    "name",
    [f"hopper_orientation_{value}.jpg" for value in range(2, 9)]
    + ["hopper_orientation_6.webp", "hopper_orientation_8.webp"],
)
def test_hopper_orientations_come_out_as_hopper(tmp_path: Path, name: str) -> None:
    source_format = name.rsplit(".", 1)[1]
    rendered = _upright(PILLOW / name, source_format, tmp_path)
    reference = Image.open(PILLOW / "hopper.jpg")
    assert rendered.size == (128, 128)
    assert mean_difference(rendered, reference) < HOPPER_TOLERANCE
    assert mean_difference(rendered.rotate(90), reference) > 2 * HOPPER_TOLERANCE


def test_avif_rotation_and_mirror_boxes_come_out_upright(tmp_path: Path) -> None:
    mirrored = _upright(PILLOW / "avif" / "rot0mir1.avif", "avif", tmp_path)
    rotated = _upright(PILLOW / "avif" / "rot1mir0.avif", "avif", tmp_path)
    # Both store the same landscape photo (one mirrored, one turned 90°), labelled with
    # their boxes: upright, they differ only by the label text.
    assert mirrored.size == rotated.size == (640, 427)
    assert mean_difference(mirrored, rotated) < 10.0
    flipped = mirrored.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert mean_difference(flipped, rotated) > 20.0


def test_xmp_orientation_is_left_alone_in_png_and_avif(tmp_path: Path) -> None:
    png = _upright(PILLOW / "xmp_tags_orientation.png", "png", tmp_path)
    avif = _upright(PILLOW / "avif" / "xmp_tags_orientation.avif", "avif", tmp_path)
    assert png.size == avif.size == (326, 268)
    assert mean_difference(png, avif) < 6.0
    # The embedded ICC profile shifts colours a little; a 180° turn changes far more.
    stored = Image.open(PILLOW / "xmp_tags_orientation.png")
    assert 2 * mean_difference(png, stored) < mean_difference(png, stored.rotate(180))


def test_imagemagick_text_exif_is_left_alone_and_reset(tmp_path: Path) -> None:
    stored = Image.open(PILLOW / "exif_imagemagick_orientation.png")
    assert stored.getexif().get(0x0112) == 3  # what a reader honouring it would apply
    rendered = _upright(PILLOW / "exif_imagemagick_orientation.png", "png", tmp_path)
    assert mean_difference(rendered, stored) < 1.0
    assert mean_difference(rendered, stored.rotate(180)) > 10.0


def test_tiff_orientation_6_fax_comes_out_as_a_wide_line_of_text(tmp_path: Path) -> None:
    rendered = _upright(PILLOW / "g4_orientation_6.tif", "tiff", tmp_path).convert("L")
    assert rendered.size == (590, 88)
    # The text "This is a test file" starts at the left: the left half holds the most ink.
    left = ImageStat.Stat(rendered.crop((0, 0, 295, 88))).mean[0]
    right = ImageStat.Stat(rendered.crop((295, 0, 590, 88))).mean[0]
    assert left < right - 5
