"""The image worker's tools, each output decoded by Pillow (not the libvips that wrote it) or by
poppler (pdfinfo, pdftoppm) for PDFs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageOps, PngImagePlugin

from mesh import sandbox
from mesh.errors import MeshError, Reason
from mesh.fields import to_fields
from mesh.tools import catalog, params
from mesh.tools.catalog import Input
from services.image import tools
from services.image.limits import ImageLimits
from services.image.tools import metadata, pdfs, pictures, watermark
from tests.image.pixels import mean_difference

CORPUS = Path("/work/shared/corpus")
ORIENTED = CORPUS / "exif-orientation-examples" / "Landscape_6.jpg"  # 1800x1200 upright
UPRIGHT = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"
LIMITS = ImageLimits()


def _upright() -> Image.Image:
    return ImageOps.exif_transpose(Image.open(ORIENTED)).convert("RGB")


def _pdfinfo(path: Path) -> dict[str, str]:
    result = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", "1000", str(path)],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    )
    return dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in result.stdout.splitlines())
    )


def _page_sizes(info: dict[str, str]) -> list[tuple[float, float]]:
    sizes = []
    for key, value in info.items():
        if re.fullmatch(r"Page\s+\d+ size", key):
            found = re.match(r"([\d.]+) x ([\d.]+)", value)
            assert found is not None
            sizes.append((float(found[1]), float(found[2])))
    return sizes


def _poppler_page(path: Path, page: int, width: int, out: Path) -> Image.Image:
    subprocess.run(
        [
            *("pdftoppm", "-png", "-f", str(page), "-l", str(page), "-scale-to-x", str(width)),
            *("-scale-to-y", "-1", "-singlefile", str(path), str(out)),
        ],
        check=True,
        timeout=60,
    )
    return Image.open(out.with_suffix(".png")).convert("RGB")


def test_every_image_tool_of_the_catalog_has_a_function() -> None:
    served = {name for name, tool in catalog.TOOLS.items() if tool.families & catalog.STILLS}
    assert served == set(tools.TOOLS)


@pytest.mark.parametrize(
    ("fit", "size"), [("cover", (512, 512)), ("contain", (512, 512)), ("inside", (512, 341))]
)
@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "avif"])
def test_thumbnail_fits_the_upright_image(
    fmt: str, fit: str, size: tuple[int, int], tmp_path: Path
) -> None:
    output = tmp_path / f"t.{fmt}"
    outcome = pictures.thumbnail(
        ORIENTED, output, "jpg", params.ThumbnailParams(format=fmt, fit=fit), LIMITS
    )
    decoded = Image.open(output)
    assert decoded.size == size == (outcome.width, outcome.height)
    assert decoded.getexif().get(0x0112, 1) == 1
    if fit == "inside":
        assert mean_difference(decoded, _upright().resize(size)) < 8


def test_thumbnail_contain_pads_transparent_or_white(tmp_path: Path) -> None:
    png, jpg = tmp_path / "t.png", tmp_path / "t.jpg"
    pictures.thumbnail(
        ORIENTED, png, "jpg", params.ThumbnailParams(format="png", fit="contain"), LIMITS
    )
    pictures.thumbnail(ORIENTED, jpg, "jpg", params.ThumbnailParams(fit="contain"), LIMITS)
    assert Image.open(png).convert("RGBA").getpixel((256, 5)) == (0, 0, 0, 0)
    corner = Image.open(jpg).convert("RGB").getpixel((256, 5))
    assert isinstance(corner, tuple) and min(corner) > 245


def test_thumbnail_enlarges_like_sharp(tmp_path: Path) -> None:
    source = tmp_path / "small.png"
    Image.new("RGB", (40, 20), (10, 200, 30)).save(source)
    output = tmp_path / "t.webp"
    pictures.thumbnail(
        source, output, "png", params.ThumbnailParams(format="webp", fit="inside"), LIMITS
    )
    assert Image.open(output).size == (512, 256)


def test_thumbnail_refuses_a_pixel_bomb_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        pictures.thumbnail(
            CORPUS / "pillow" / "decompression_bomb.gif",
            tmp_path / "t.jpg",
            "gif",
            params.ThumbnailParams(),
            LIMITS,
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    ("fit", "size"),
    [
        ("cover", (300, 300)),
        ("contain", (300, 300)),
        ("fill", (300, 300)),
        ("inside", (300, 200)),
        ("outside", (450, 300)),
    ],
)
def test_transform_fits(fit: str, size: tuple[int, int], tmp_path: Path) -> None:
    output = tmp_path / "t.png"
    transform = params.TransformParams(format="png", width=300, height=300, fit=fit)
    outcome = pictures.transform(ORIENTED, output, "jpg", transform, LIMITS)
    decoded = Image.open(output).convert("RGB")
    assert decoded.size == size == (outcome.width, outcome.height)
    if fit in ("fill", "inside", "outside"):
        assert mean_difference(decoded, _upright().resize(size)) < 8


def test_transform_rotates_flips_and_flops_like_pillow(tmp_path: Path) -> None:
    output = tmp_path / "t.png"
    transform = params.TransformParams(format="png", width=200, rotate=90, flip=True, flop=True)
    pictures.transform(ORIENTED, output, "jpg", transform, LIMITS)
    expected = _upright().transpose(Image.Transpose.ROTATE_270)  # clockwise
    expected = expected.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((200, 300))
    decoded = Image.open(output).convert("RGB")
    assert decoded.size == (200, 300)
    assert mean_difference(decoded, expected) < 8


def test_a_quarter_turn_at_full_size_reads_a_jpeg_once(tmp_path: Path) -> None:
    output = tmp_path / "t.webp"
    outcome = pictures.transform(UPRIGHT, output, "jpg", params.TransformParams(rotate=270), LIMITS)
    assert (outcome.width, outcome.height) == (1200, 1800)
    decoded = Image.open(output).convert("RGB")
    expected = Image.open(UPRIGHT).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    assert decoded.size == (1200, 1800) and mean_difference(decoded, expected) < 8


def test_transform_crops_the_upright_image_then_resizes(tmp_path: Path) -> None:
    output = tmp_path / "t.jpg"
    transform = params.TransformParams(
        format="jpg", crop_left=900, crop_top=100, crop_width=600, crop_height=400, width=300
    )
    outcome = pictures.transform(ORIENTED, output, "jpg", transform, LIMITS)
    expected = _upright().crop((900, 100, 1500, 500)).resize((300, 200))
    assert Image.open(output).size == (300, 200) and outcome.applied_quality == 86
    assert mean_difference(Image.open(output), expected) < 8


def test_transform_by_an_odd_angle_widens_the_canvas(tmp_path: Path) -> None:
    output = tmp_path / "t.webp"
    pictures.transform(UPRIGHT, output, "jpg", params.TransformParams(rotate=45), LIMITS)
    decoded = Image.open(output).convert("RGBA")
    side = round((1800 + 1200) / 2**0.5)
    assert abs(decoded.width - side) <= 2 and abs(decoded.height - side) <= 2
    assert decoded.getpixel((2, 2))[3] == 0  # type: ignore[index]


def test_transform_refuses_a_crop_outside_the_image(tmp_path: Path) -> None:
    transform = params.TransformParams(crop_left=1700, crop_top=0, crop_width=200, crop_height=10)
    with pytest.raises(MeshError) as caught:
        pictures.transform(ORIENTED, tmp_path / "t.webp", "jpg", transform, LIMITS)
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "cropWidth" in caught.value.detail["fields"]


def test_strip_metadata_of_a_jpeg_drops_gps_and_keeps_every_pixel(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "exif_gps.jpg"
    output = tmp_path / "s.jpg"
    metadata.strip_metadata(source, output, "jpg", params.StripMetadataParams(), LIMITS)
    assert Image.open(source).getexif().get_ifd(0x8825)  # GPS before
    stripped = Image.open(output)
    assert len(stripped.getexif()) == 0 and "xmp" not in stripped.info
    assert mean_difference(stripped, Image.open(source)) == 0


def test_strip_metadata_drops_iptc_and_keeps_the_orientation(tmp_path: Path) -> None:
    output = tmp_path / "s.jpg"
    metadata.strip_metadata(
        CORPUS / "pillow" / "iptc.jpg", output, "jpg", params.StripMetadataParams(), LIMITS
    )
    assert "photoshop" in Image.open(CORPUS / "pillow" / "iptc.jpg").info
    assert "photoshop" not in Image.open(output).info
    oriented = tmp_path / "o.jpg"
    metadata.strip_metadata(ORIENTED, oriented, "jpg", params.StripMetadataParams(), LIMITS)
    assert dict(Image.open(oriented).getexif()) == {0x0112: 6}
    assert mean_difference(ImageOps.exif_transpose(Image.open(oriented)), _upright()) == 0


def test_strip_metadata_keeps_the_icc_profile(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "icc_profile_big.jpg"
    output = tmp_path / "s.jpg"
    metadata.strip_metadata(source, output, "jpg", params.StripMetadataParams(), LIMITS)
    assert Image.open(output).info["icc_profile"] == Image.open(source).info["icc_profile"]


def test_strip_metadata_of_png_and_webp(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x0131] = "secret software"
    png, webp = tmp_path / "in.png", tmp_path / "in.webp"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret comment")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    picture = Image.new("RGBA", (64, 48), (200, 30, 60, 128))
    picture.save(png, pnginfo=info, exif=exif)
    picture.save(webp, exif=exif, xmp=b"<x:xmpmeta>secret</x:xmpmeta>", lossless=True)
    for source, fmt in ((png, "png"), (webp, "webp")):
        output = tmp_path / f"out.{fmt}"
        metadata.strip_metadata(source, output, fmt, params.StripMetadataParams(), LIMITS)
        stripped = Image.open(output)
        assert b"secret" not in output.read_bytes()
        assert len(stripped.getexif()) == 0
        assert stripped.convert("RGBA").getpixel((5, 5)) == (200, 30, 60, 128)


def test_strip_metadata_of_a_tiff_rewrites_it(tmp_path: Path) -> None:
    source, output = tmp_path / "in.tif", tmp_path / "out.tif"
    exif = Image.Exif()
    exif[0x013B] = "secret artist"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(source, exif=exif)
    outcome = metadata.strip_metadata(source, output, "tiff", params.StripMetadataParams(), LIMITS)
    assert outcome.format == "tiff" and b"secret" not in output.read_bytes()
    assert Image.open(output).convert("RGB").getpixel((3, 3)) == (1, 2, 3)


def test_image_to_pdf_makes_one_page_per_image(tmp_path: Path) -> None:
    png = tmp_path / "wide.png"
    Image.new("RGBA", (400, 100), (0, 0, 255, 255)).save(png)
    output = tmp_path / "out.pdf"
    sources = [(UPRIGHT, "jpg"), (ORIENTED, "jpg"), (png, "png")]
    outcome = pdfs.image_to_pdf(sources, output, params.ImageToPdfParams(), LIMITS)
    info = _pdfinfo(output)
    assert info["Pages"] == "3" and outcome.mime_type == "application/pdf"
    assert _page_sizes(info) == [(1350, 900), (1350, 900), (300, 75)]  # 96 px per inch
    page = _poppler_page(output, 2, 600, tmp_path / "p2")
    assert mean_difference(page, _upright().resize(page.size)) < 12  # two resamplers, JPEG q90
    third = _poppler_page(output, 3, 400, tmp_path / "p3")
    red, green, blue = third.getpixel((200, 50))  # type: ignore[misc]
    assert red < 8 and green < 8 and blue > 245


@pytest.mark.parametrize(("size", "points"), [("a4", (595.28, 841.89)), ("letter", (612, 792))])
def test_image_to_pdf_on_paper_takes_the_image_orientation(
    size: str, points: tuple[float, float], tmp_path: Path
) -> None:
    tall = tmp_path / "tall.png"
    Image.new("RGB", (100, 300), (255, 0, 0)).save(tall)
    output = tmp_path / "out.pdf"
    sources = [(UPRIGHT, "jpg"), (tall, "png")]
    pdfs.image_to_pdf(sources, output, params.ImageToPdfParams(page_size=size), LIMITS)
    landscape, portrait = _page_sizes(_pdfinfo(output))
    assert landscape == pytest.approx((points[1], points[0]), abs=0.5)
    assert portrait == pytest.approx(points, abs=0.5)
    page = _poppler_page(output, 2, 612, tmp_path / "p")
    middle, corner = page.getpixel((page.width // 2, page.height // 2)), page.getpixel((5, 5))
    assert middle[0] > 200 and middle[1] < 60 and corner == (255, 255, 255)  # type: ignore[index]


def test_pdf_preview_renders_the_asked_page(tmp_path: Path) -> None:
    source = tmp_path / "two.pdf"
    first = Image.new("RGB", (300, 400), (255, 0, 0))
    first.save(source, save_all=True, append_images=[Image.new("RGB", (300, 400), (0, 128, 0))])
    output = tmp_path / "p.png"
    preview = params.PdfPreviewParams(format="png", page=2, width=600)
    outcome = pdfs.pdf_preview(source, output, "pdf", preview, LIMITS)
    rendered = Image.open(output).convert("RGB")
    assert rendered.size == (600, 800) == (outcome.width, outcome.height)
    red, green, blue = rendered.getpixel((300, 400))  # type: ignore[misc]
    assert red < 8 and abs(green - 128) < 8 and blue < 8  # page 2, not page 1
    poppler = _poppler_page(source, 2, 600, tmp_path / "poppler")
    assert mean_difference(rendered, poppler.resize(rendered.size)) < 4
    with pytest.raises(MeshError) as caught:
        pdfs.pdf_preview(source, output, "pdf", params.PdfPreviewParams(page=3), LIMITS)
    assert caught.value.reason is Reason.INVALID_FIELD and "page" in caught.value.detail["fields"]


def test_pdf_preview_of_a_corpus_pdf(tmp_path: Path) -> None:
    output = tmp_path / "p.jpg"
    pdfs.pdf_preview(CORPUS / "small" / "pdf.pdf", output, "pdf", params.PdfPreviewParams(), LIMITS)
    assert Image.open(output).size == (1600, round(1600 * 792 / 612))


def _grey(tmp_path: Path) -> Path:
    source = tmp_path / "grey.png"
    Image.new("RGB", (800, 600), (128, 128, 128)).save(source)
    return source


def _changed(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    region = image.convert("RGB").crop(box)
    return sum(1 for pixel in region.get_flattened_data() if pixel != (128, 128, 128))


def test_text_watermark_is_drawn_where_positioned(tmp_path: Path) -> None:
    output = tmp_path / "out.png"
    mark = params.WatermarkParams(text="convertmesh", position="bottom-right", margin=32)
    outcome = watermark.watermark(_grey(tmp_path), output, "png", mark, LIMITS)
    marked = Image.open(output)
    assert marked.size == (800, 600) and outcome.format == "png"
    assert _changed(marked, (800 - 32 - 200, 600 - 32 - 40, 800 - 32, 600 - 32)) > 200
    assert _changed(marked, (0, 0, 400, 400)) == 0
    assert _changed(marked, (800 - 30, 0, 800, 600)) == 0  # the margin stays clear


def test_logo_watermark_blends_by_opacity(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGB", (100, 50), (0, 0, 255)).save(logo)
    output = tmp_path / "out.jpg"
    mark = params.WatermarkParams(position="top-left", opacity=0.5, margin=10, watermark_width=200)
    watermark.watermark(
        _grey(tmp_path).rename(tmp_path / "g.png"), output, "png", mark, LIMITS, logo=(logo, "png")
    )
    marked = Image.open(output).convert("RGB")
    red, _green, blue = marked.getpixel((110, 60))  # type: ignore[misc]
    assert abs(red - 64) < 8 and abs(blue - 191) < 8
    assert marked.getpixel((300, 300)) == marked.getpixel((700, 500))


def test_watermark_refuses_an_unreadable_logo(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MeshError) as caught:
        watermark.watermark(
            _grey(tmp_path),
            tmp_path / "o.png",
            "png",
            params.WatermarkParams(),
            LIMITS,
            logo=(logo, "png"),
        )
    assert caught.value.reason is Reason.CORRUPT_INPUT
    assert "watermarkFile" in caught.value.detail["fields"]


async def test_image_tools_run_in_the_sandbox(tmp_path: Path) -> None:
    bounds = sandbox.SandboxLimits(wall_seconds=60, memory_bytes=None)
    output = tmp_path / "out.pdf"
    sources = [Input(UPRIGHT, "jpg"), Input(ORIENTED, "jpg")]
    fields = to_fields(params.ImageToPdfParams(page_size="letter"))
    outcome = await sandbox.run_isolated(
        tools.run, "image-to-pdf", sources, output, fields, LIMITS, limits=bounds
    )
    assert outcome.format == "pdf" and _pdfinfo(output)["Pages"] == "2"
    with pytest.raises(MeshError) as caught:
        await sandbox.run_isolated(
            tools.run,
            "transform",
            sources[:1],
            output,
            {"fit": "squash", "quality": "0"},
            LIMITS,
            limits=bounds,
        )
    assert set(caught.value.detail["fields"]) == {"fit", "quality"}
