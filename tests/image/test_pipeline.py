from __future__ import annotations

import io
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageCms, ImageStat

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from mesh.outcome import Outcome
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import mean_difference

HOPPER = CORPUS / "pillow" / "hopper.jpg"
PHOTO = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"
TRANSPARENT = CORPUS / "pillow" / "transparent.png"
PILLOW_NAMES = {
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "avif": "AVIF",
    "gif": "GIF",
    "tiff": "TIFF",
    "heif": "HEIF",
}
# Lossy codecs and the 256-colour GIF palette stay well under this on hopper.
SAME_PICTURE = 12.0

pillow_heif.register_heif_opener()


def _run(source: Path, out: Path, source_format: str, **options: object) -> tuple[Path, Outcome]:
    outcome = convert(
        source,
        out,
        source_format,
        ConversionOptions(**options),  # type: ignore[arg-type]
        ImageLimits(),
    )
    return out, outcome


@pytest.mark.parametrize("target", sorted(PILLOW_NAMES))
def test_jpeg_converts_to_every_raster_format_with_the_same_picture(
    tmp_path: Path, target: str
) -> None:
    path, outcome = _run(HOPPER, tmp_path / f"out.{target}", "jpg", format=target)
    decoded = Image.open(path)
    assert decoded.format == PILLOW_NAMES[target]
    assert decoded.size == (128, 128)
    assert outcome.format == target
    assert (outcome.width, outcome.height) == (128, 128)
    assert mean_difference(decoded, HOPPER) < SAME_PICTURE


@pytest.mark.parametrize(
    ("name", "source_format"),
    [
        ("hopper.png", "png"),
        ("hopper.webp", "webp"),
        ("avif/hopper.avif", "avif"),
        ("iss634.gif", "gif"),
        ("hopper_lzw.tif", "tiff"),
        ("hopper.bmp", "bmp"),
        ("hopper.ico", "ico"),
        ("avif/hopper.heif", "heif"),
    ],
)
def test_every_raster_input_decodes_to_png(tmp_path: Path, name: str, source_format: str) -> None:
    source = CORPUS / "pillow" / name
    path, outcome = _run(source, tmp_path / "out.png", source_format, format="png")
    decoded = Image.open(path)
    reference = Image.open(source)
    assert decoded.size == reference.size
    assert (outcome.width, outcome.height) == reference.size
    assert mean_difference(decoded, reference.convert("RGB")) < SAME_PICTURE


def test_empty_format_keeps_the_input_format(tmp_path: Path) -> None:
    path, outcome = _run(CORPUS / "pillow" / "hopper.webp", tmp_path / "out", "webp", format="")
    assert Image.open(path).format == "WEBP"
    assert outcome.mime_type == "image/webp"


def test_lower_compression_gives_a_smaller_jpeg(tmp_path: Path) -> None:
    high, _ = _run(PHOTO, tmp_path / "high.jpg", "jpg", format="jpg", compression=95)
    low, outcome = _run(PHOTO, tmp_path / "low.jpg", "jpg", format="jpg", compression=30)
    assert low.stat().st_size < high.stat().st_size / 2
    assert outcome.applied_quality == 30


@pytest.mark.parametrize(
    ("resize", "extra", "size"),
    [
        ("original", {}, (1800, 1200)),
        ("website", {}, (1800, 1200)),
        ("email", {}, (600, 400)),
        ("instagram", {}, (1080, 1080)),
        ("linkedin", {}, (1200, 627)),
        ("ecommerce", {}, (2000, 2000)),
        ("square", {}, (1080, 1080)),
        ("square", {"resize_width": 300}, (300, 300)),
        ("width", {"resize_width": 900}, (900, 600)),
        ("width", {"resize_width": 3600}, (3600, 2400)),
        ("height", {"resize_height": 300}, (450, 300)),
    ],
)
def test_resize_presets_give_their_documented_size(
    tmp_path: Path, resize: str, extra: dict[str, int], size: tuple[int, int]
) -> None:
    path, outcome = _run(PHOTO, tmp_path / "out.jpg", "jpg", format="jpg", resize=resize, **extra)
    assert Image.open(path).size == size
    assert (outcome.width, outcome.height) == size


def test_ecommerce_pads_jpeg_with_white_and_png_with_transparency(tmp_path: Path) -> None:
    jpeg, _ = _run(PHOTO, tmp_path / "out.jpg", "jpg", format="jpg", resize="ecommerce")
    band = Image.open(jpeg).convert("RGB").crop((0, 0, 2000, 300))
    assert min(ImageStat.Stat(band).mean) > 250
    png, _ = _run(PHOTO, tmp_path / "out.png", "jpg", format="png", resize="ecommerce")
    decoded = Image.open(png).convert("RGBA")
    assert decoded.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert decoded.getpixel((1000, 1000))[3] == 255  # type: ignore[index]


def test_cover_keeps_the_centre_of_the_picture(tmp_path: Path) -> None:
    path, _ = _run(PHOTO, tmp_path / "out.png", "jpg", format="png", resize="instagram")
    centre = Image.open(PHOTO).convert("RGB").crop((300, 0, 1500, 1200)).resize((1080, 1080))
    assert mean_difference(path, centre) < 4.0


def test_alpha_is_flattened_onto_white_for_jpeg(tmp_path: Path) -> None:
    source = Image.open(TRANSPARENT).convert("RGBA")
    clear = next(
        (x, y)
        for y in range(source.height)
        for x in range(source.width)
        if source.getpixel((x, y))[3] == 0  # type: ignore[index]
    )
    path, _ = _run(TRANSPARENT, tmp_path / "out.jpg", "png", format="jpg")
    assert min(Image.open(path).convert("RGB").getpixel(clear)) > 245  # type: ignore[arg-type]


def test_alpha_survives_into_webp(tmp_path: Path) -> None:
    path, _ = _run(TRANSPARENT, tmp_path / "out.webp", "png", format="webp")
    decoded = Image.open(path)
    assert decoded.mode == "RGBA"
    assert decoded.getchannel("A").getextrema()[0] == 0


def test_lossless_webp_reproduces_the_pixels(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "hopper.png"
    path, outcome = _run(source, tmp_path / "out.webp", "png", format="webp", lossless=True)
    assert mean_difference(path, source) == 0.0
    assert outcome.applied_quality is None


@pytest.mark.parametrize("target", ["mp4", "zip", "bmp", "nonsense"])
def test_non_image_outputs_are_an_unsupported_pair(tmp_path: Path, target: str) -> None:
    with pytest.raises(MeshError) as caught:
        _run(HOPPER, tmp_path / "out", "jpg", format=target)
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR


@pytest.mark.parametrize("source_format", ["mp4", "zip", ""])
def test_non_image_inputs_are_an_unsupported_format(tmp_path: Path, source_format: str) -> None:
    with pytest.raises(MeshError) as caught:
        _run(HOPPER, tmp_path / "out.png", source_format, format="png")
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT


def test_strip_metadata_drops_gps_and_exif_but_default_keeps_them(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "exif_gps.jpg"
    stripped, _ = _run(source, tmp_path / "stripped.jpg", "jpg", format="jpg", strip_metadata=True)
    kept, _ = _run(source, tmp_path / "kept.jpg", "jpg", format="jpg")
    assert not Image.open(stripped).getexif().get_ifd(0x8825)
    assert 0x010F not in Image.open(stripped).getexif()
    assert Image.open(kept).getexif().get_ifd(0x8825)


def test_strip_metadata_keeps_an_icc_profile_as_srgb(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "icc_profile.png"
    path, _ = _run(source, tmp_path / "out.png", "png", format="png", strip_metadata=True)
    profile = Image.open(path).info.get("icc_profile")
    assert profile is not None
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    assert "srgb" in description.lower()


def test_compress_re_encodes_a_jpeg_below_its_own_quality_and_smaller(tmp_path: Path) -> None:
    path, outcome = _run(PHOTO, tmp_path / "out.jpg", "jpg", format="")
    assert path.stat().st_size < PHOTO.stat().st_size
    assert outcome.applied_quality is not None and outcome.applied_quality <= 75
    assert not outcome.kept_original
    assert mean_difference(Image.open(path), PHOTO) < SAME_PICTURE


@pytest.mark.parametrize(
    ("relative", "source_format"),
    [
        ("pillow/pil123p.png", "png"),  # a palette PNG that truecolour PNG cannot beat
        ("pillow/i_trns.png", "png"),  # 16-bit grey: 8-bit output would lose precision
        ("small/jpeg.jpg", "jpg"),  # 107 bytes: nothing to gain
    ],
)
def test_compress_hands_back_the_source_when_it_cannot_do_better(
    tmp_path: Path, relative: str, source_format: str
) -> None:
    source = CORPUS / relative
    path, outcome = _run(source, tmp_path / f"out.{source_format}", source_format, format="")
    assert path.read_bytes() == source.read_bytes()
    assert outcome.kept_original and outcome.applied_quality is None


def test_compress_png_is_lossless(tmp_path: Path) -> None:
    source = CORPUS / "pillow/pil123rgba.png"
    path, outcome = _run(source, tmp_path / "out.png", "png", format="")
    assert path.stat().st_size < source.stat().st_size and not outcome.kept_original
    before, after = Image.open(source).convert("RGBA"), Image.open(path).convert("RGBA")
    assert before.tobytes() == after.tobytes()


def test_compress_with_strip_metadata_never_returns_the_tagged_source(tmp_path: Path) -> None:
    source = CORPUS / "small/jpeg.jpg"
    path, outcome = _run(source, tmp_path / "out.jpg", "jpg", format="", strip_metadata=True)
    assert not outcome.kept_original
    assert Image.open(path).format == "JPEG"
