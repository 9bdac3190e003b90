from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference, on_white

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


# A4: alpha is kept where the output holds it and flattened onto white where it does not.
# Lossless outputs match Pillow's own decode exactly; lossy ones within their codec noise.
TRANSPARENT_PNGS = [
    "1_trns.png",
    "l_trns.png",
    "p_trns_single.png",
    "rgb_trns.png",
    "pil123p.png",  # palette + tRNS, interlaced
    "pil123rgba.png",  # RGBA, interlaced
]
LOSSY_NOISE = {"png": 0.5, "webp": 4.0, "jpg": 7.0}


def _alpha(image: Image.Image) -> Image.Image:
    return image.convert("RGBA").getchannel("A")


@pytest.mark.parametrize("name", TRANSPARENT_PNGS)
@pytest.mark.parametrize("target", ["png", "webp", "jpg"])
def test_transparency_is_kept_or_flattened_onto_white(
    tmp_path: Path, name: str, target: str
) -> None:
    source = Image.open(CORPUS / "pillow" / name)
    output = tmp_path / f"out.{target}"
    convert(
        CORPUS / "pillow" / name, output, "png", ConversionOptions(format=target), ImageLimits()
    )
    decoded = Image.open(output)
    assert mean_difference(on_white(decoded), on_white(source)) < LOSSY_NOISE[target]
    if target == "jpg":
        assert decoded.mode in ("RGB", "L")
    else:
        assert decoded.mode in ("RGBA", "LA")
        assert mean_difference(_alpha(decoded), _alpha(source)) < 1.0
    assert _alpha(source).getextrema()[0] == 0  # the source does have transparent pixels


def test_sixteen_bit_grey_with_trns_keeps_its_transparent_value(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "i_trns.png"
    stored = Image.open(source).convert("I")
    transparent = Image.new("L", stored.size)
    transparent.putdata([255 if value == 255 else 0 for value in stored.get_flattened_data()])
    assert transparent.getextrema() == (0, 255)
    output = tmp_path / "out.png"
    convert(source, output, "png", ConversionOptions(format="png"), ImageLimits())
    alpha = _alpha(Image.open(output))
    # tRNS names the 16-bit value 255 transparent; every other sample (0-254 of 65535) is
    # near-black and opaque.
    assert mean_difference(alpha, transparent.point(lambda value: 255 - value)) < 0.5
    flattened = tmp_path / "out.jpg"
    convert(source, flattened, "png", ConversionOptions(format="jpg"), ImageLimits())
    assert mean_difference(Image.open(flattened), transparent) < 4.0


def test_sixteen_bit_tiff_is_scaled_not_clipped(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "16bit.cropped.tif"
    low, high = cast(tuple[int, int], Image.open(source).convert("I").getextrema())
    output = tmp_path / "out.png"
    convert(source, output, "tiff", ConversionOptions(format="png"), ImageLimits())
    darkest, brightest = cast(tuple[int, int], Image.open(output).convert("L").getextrema())
    # 291-694 of 65535 is 1-3 of 255: near black, not white as clipping to 8 bits would give.
    assert (low, high) == (291, 694)
    assert darkest >= low // 257 - 1 and brightest <= high // 257 + 1


# A6: container and compression variants decode, compared with Pillow's own decoders
# (libavif and libtiff, independent of libvips' libheif and its TIFF reader).
VARIANTS = [
    ("avif/hopper.avif", "avif"),
    ("avif/exif.avif", "avif"),
    ("avif/icc_profile.avif", "avif"),
    ("avif/transparency.avif", "avif"),
    ("avif/hopper.heif", "heif"),
    ("hopper_bigtiff.tif", "tiff"),
    ("hopper_lzw.tif", "tiff"),
    ("hopper_jpg.tif", "tiff"),
    ("hopper_lzma.tif", "tiff"),
    ("hopper_gray_4bpp.tif", "tiff"),
]


@pytest.mark.parametrize(("name", "source_format"), VARIANTS)
def test_container_variants_decode_like_pillow(
    tmp_path: Path, name: str, source_format: str
) -> None:
    output = tmp_path / "out.png"
    outcome = convert(
        CORPUS / "pillow" / name,
        output,
        source_format,
        ConversionOptions(format="png"),
        ImageLimits(),
    )
    reference = on_white(Image.open(CORPUS / "pillow" / name))
    assert (outcome.width, outcome.height) == reference.size
    # ICC-tagged files are converted to sRGB by us and not by Pillow: a few levels apart.
    assert mean_difference(on_white(Image.open(output)), reference) < 6.0


def test_small_heif_decodes(tmp_path: Path) -> None:
    output = tmp_path / "out.png"
    outcome = convert(
        CORPUS / "small" / "heif.heif",
        output,
        "heif",
        ConversionOptions(format="png"),
        ImageLimits(),
    )
    assert Image.open(output).size == (outcome.width, outcome.height) == (64, 64)
    assert mean_difference(Image.open(output), Image.open(CORPUS / "small" / "heif.heif")) < 3.0
