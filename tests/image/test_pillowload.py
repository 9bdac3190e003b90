"""Sources decoded through Pillow: APNG and AVIF sequences (A5), float and tiled-planar TIFF
(A4, A6), and the invalid APNGs (typed rejection or a still image)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from mesh.outcome import Outcome
from services.image.pillowload import is_apng, tiff_needs_pillow
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference, on_white

PILLOW = CORPUS / "pillow"


def _convert(
    name: str, source_format: str, target: str, out: Path, **options: object
) -> tuple[Path, Outcome]:
    path = out / f"out.{target}"
    outcome = convert(
        PILLOW / name,
        path,
        source_format,
        ConversionOptions(format=target, **options),  # type: ignore[arg-type]
        ImageLimits(),
    )
    return path, outcome


def _frames(path: Path) -> list[tuple[Image.Image, int]]:
    image = Image.open(path)
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
        frames.append((on_white(image), int(image.info.get("duration", 0))))
    return frames


def test_apng_is_recognised_by_its_animation_chunk() -> None:
    assert is_apng(PILLOW / "iss634.apng")
    assert is_apng(PILLOW / "apng" / "dispose_op_previous.png")
    assert not is_apng(PILLOW / "hopper.png")
    assert not is_apng(PILLOW / "hopper.jpg")


@pytest.mark.parametrize("target", ["gif", "webp"])
def test_apng_stays_animated_with_its_timing(tmp_path: Path, target: str) -> None:
    path, outcome = _convert("iss634.apng", "png", target, tmp_path)
    expected, actual = _frames(PILLOW / "iss634.apng"), _frames(path)
    assert len(actual) == len(expected) == 41
    assert [duration for _, duration in actual] == [duration for _, duration in expected]
    assert (outcome.width, outcome.height) == (245, 245)
    # GIF's 256-colour palette and lossy WebP stay well under this.
    assert mean_difference(actual[20][0], expected[20][0]) < 10.0


def test_apng_dispose_and_blend_ops_are_composited(tmp_path: Path) -> None:
    path, _ = _convert("apng/dispose_op_previous.png", "png", "webp", tmp_path, lossless=True)
    expected, actual = _frames(PILLOW / "apng" / "dispose_op_previous.png"), _frames(path)
    # WebP merges identical neighbouring frames (adding their durations); every frame it
    # keeps must be one Pillow composited, and the animation must end on the same picture.
    assert 2 <= len(actual) <= len(expected)
    for ours, _ in actual:
        assert min(mean_difference(ours, theirs) for theirs, _ in expected) < 1.0
    assert mean_difference(actual[-1][0], expected[-1][0]) < 1.0
    assert mean_difference(expected[1][0], expected[-1][0]) > 5.0  # frames do differ


def test_apng_to_a_still_format_is_its_default_image(tmp_path: Path) -> None:
    path, _ = _convert("iss634.apng", "png", "png", tmp_path)
    assert getattr(Image.open(path), "n_frames", 1) == 1
    assert mean_difference(on_white(Image.open(path)), _frames(PILLOW / "iss634.apng")[0][0]) < 1


@pytest.mark.parametrize("name", ["apng/chunk_no_fdat.png", "apng/syntax_num_frames_zero.png"])
@pytest.mark.parametrize("target", ["gif", "png"])
def test_invalid_apng_is_refused_as_corrupt_or_made_still(
    tmp_path: Path, name: str, target: str
) -> None:
    try:
        path, _ = _convert(name, "png", target, tmp_path)
    except MeshError as error:
        assert error.reason is Reason.CORRUPT_INPUT
    else:
        assert Image.open(path).size == (128, 64)


def test_animated_avif_keeps_its_frames_into_gif(tmp_path: Path) -> None:
    path, outcome = _convert("avif/star.avifs", "avif", "gif", tmp_path)
    expected, actual = _frames(PILLOW / "avif" / "star.avifs"), _frames(path)
    assert len(actual) == len(expected) == 5
    assert (outcome.width, outcome.height) == (159, 159)
    for (ours, _), (theirs, _) in zip(actual, expected, strict=True):
        assert mean_difference(ours, theirs) < 8.0


def test_animated_avif_to_png_is_its_first_frame(tmp_path: Path) -> None:
    path, _ = _convert("avif/star.avifs", "avif", "png", tmp_path)
    first = _frames(PILLOW / "avif" / "star.avifs")[0][0]
    assert mean_difference(on_white(Image.open(path)), first) < 2.0


def test_float_tiff_is_stretched_from_its_own_range(tmp_path: Path) -> None:
    source = Image.open(PILLOW / "10ct_32bit_128.tiff")
    assert tiff_needs_pillow(PILLOW / "10ct_32bit_128.tiff")
    low, high = cast(tuple[float, float], source.getextrema())
    scale = 255.0 / (high - low)
    reference = source.point(lambda value: value * scale - low * scale).convert("L")
    path, _ = _convert("10ct_32bit_128.tiff", "tiff", "png", tmp_path)
    rendered = Image.open(path)
    assert rendered.size == (128, 128)
    assert rendered.convert("L").getextrema() == (0, 255)
    assert mean_difference(rendered, reference) < 1.5


def test_tiled_tiff_with_separate_planes_decodes(tmp_path: Path) -> None:
    assert tiff_needs_pillow(PILLOW / "tiff_tiled_planar_lzw.tiff")
    assert not tiff_needs_pillow(PILLOW / "hopper_lzw.tif")
    path, _ = _convert("tiff_tiled_planar_lzw.tiff", "tiff", "jpg", tmp_path)
    reference = Image.open(PILLOW / "tiff_tiled_planar_lzw.tiff")
    assert Image.open(path).size == reference.size == (278, 374)
    assert mean_difference(path, reference) < 6.0


def test_cielab_tiff_becomes_srgb_close_to_its_rgb_twin(tmp_path: Path) -> None:
    assert tiff_needs_pillow(PILLOW / "hopper.Lab.tif")
    path, _ = _convert("hopper.Lab.tif", "tiff", "png", tmp_path)
    # Lab -> sRGB through libvips' D65 white: a few levels from the RGB original; reading
    # a*/b* as unsigned would measure ~88.
    assert mean_difference(path, PILLOW / "hopper.png") < 6.0


@pytest.mark.parametrize(
    "limits", [ImageLimits(max_frames=10), ImageLimits(max_pixels=245 * 245 * 10)]
)
def test_apng_frames_count_against_the_limits_before_decoding(
    tmp_path: Path, limits: ImageLimits
) -> None:
    with pytest.raises(MeshError) as caught:
        convert(
            PILLOW / "iss634.apng",
            tmp_path / "out.gif",
            "png",
            ConversionOptions(format="gif"),
            limits,
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
