"""The resvg test suite (A7, B10): every SVG renders, matches resvg's reference PNG within
BLURRED_TOLERANCE, and never reaches outside the document; compute bombs end inside the
sandbox's wall-clock limit, rendered or refused, never hanging the worker.

The renderer is librsvg, not resvg: where the two disagree by design on an invalid document
(recursion, zero size, huge filter radius) or where the bundled librsvg lacks a codec, the file
is listed in DIVERGENCES with the reason, and only rendering is checked for it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from mesh.sandbox import SandboxLimits, run_isolated
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS
from tests.image.pixels import blurred_difference, on_white

SUITE = CORPUS / "resvg" / "tests"
SVGS = sorted(path.relative_to(SUITE).as_posix() for path in SUITE.rglob("*.svg"))
# Mean absolute difference per channel, 0-255, after compositing on white and a radius-1
# Gaussian blur (tests/image/pixels.py). Matching renders measure 0-2; a missing or wrong
# shape measures 10-140.
BLURRED_TOLERANCE = 3.0
# The wall-clock limit each compute bomb runs under, in the worker's own sandbox (B10): what
# it must show is that the limit holds (rendered or refused, the worker unharmed), not a speed.
BOMB_LIMITS = SandboxLimits(wall_seconds=20.0, memory_bytes=2 * 1024**3)

# Text is laid out with whatever fonts the machine has, not resvg's Noto set.
TEXT = {name for name in SVGS if re.search(rb"<text\b", (SUITE / name).read_bytes())}
# References to files outside the document or to the network: the reference PNG shows the
# external content, which a converter must never load.
EXTERNAL = {
    name
    for name in SVGS
    if re.search(rb"""(?:href\s*=\s*["'](?![#]|data:)|@import)""", (SUITE / name).read_bytes())
}
DIVERGENCES = {
    # resvg draws nothing for a zero or negative root size; we treat it as absent (browsers
    # ignore an invalid negative length) and render the drawing at its own size.
    "structure/svg/zero-size.svg": "zero size treated as absent",
    "structure/svg/negative-size.svg": "negative size treated as absent",
    # Self-references: resvg drops the reference and keeps the element, librsvg drops the
    # element; both finish, which is what B10 asks.
    "filters/feImage/self-recursive.svg": "recursion: element dropped",
    "paint-servers/linearGradient/self-recursive-xlink-href.svg": "recursion: element dropped",
    "paint-servers/pattern/self-recursive.svg": "recursion: element dropped",
    "masking/clipPath/self-recursive.svg": "recursion: element dropped",
    "masking/mask/self-recursive.svg": "recursion: element dropped",
    "painting/marker/recursive-1.svg": "recursion: element dropped",
    "structure/use/self-recursive.svg": "recursion: element dropped",
    # A document sized by its bounding box is rendered at its own size and the raster scaled
    # 2.5x (librsvg cannot scale such a document): the 1-px frame softens (measures 4.0).
    "structure/svg/no-size.svg": "raster upscaled",
    # librsvg leaves a faint tint (<= 6/255) where resvg's huge blur leaves white (3.5).
    "filters/feGaussianBlur/huge-stdDeviation.svg": "faint tint",
    # resvg treats a morphology radius beyond the region as an empty result; librsvg clamps it.
    "filters/feMorphology/huge-radius.svg": "huge radius clamped, not emptied",
}
COMPARED = [name for name in SVGS if name not in TEXT | EXTERNAL | set(DIVERGENCES)]
BOMBS = [
    "filters/filter/huge-region.svg",
    "filters/feGaussianBlur/huge-stdDeviation.svg",
    "filters/feMorphology/huge-radius.svg",
    "structure/use/self-recursive.svg",
    "structure/use/indirect-recursive-1.svg",
    "structure/image/recursive-1.svg",
    "structure/image/recursive-2.svg",
    "painting/marker/recursive-1.svg",
]


def _options(width: int | None = None) -> ConversionOptions:
    if width:
        return ConversionOptions(format="png", resize="width", resize_width=width)
    return ConversionOptions(format="png")


def _render(source: Path, output: Path, width: int | None = None) -> None:
    """Renders `source` to PNG (at `width` if given)."""
    convert(source, output, "svg", _options(width), ImageLimits())


def test_the_suite_is_all_there() -> None:
    assert len(SVGS) == 40
    assert len(COMPARED) >= 16
    assert set(DIVERGENCES) <= set(SVGS)
    assert set(BOMBS) <= set(SVGS)


@pytest.mark.parametrize("name", SVGS)
def test_renders(tmp_path: Path, name: str) -> None:
    output = tmp_path / "out.png"
    _render(SUITE / name, output)
    rendered = Image.open(output)
    assert rendered.format == "PNG"
    assert rendered.width > 0 and rendered.height > 0


@pytest.mark.parametrize("name", COMPARED)
def test_matches_the_reference_render(tmp_path: Path, name: str) -> None:
    reference = Image.open((SUITE / name).with_suffix(".png"))
    output = tmp_path / "out.png"
    _render(SUITE / name, output, width=reference.width)
    assert blurred_difference(output, reference) < BLURRED_TOLERANCE


@pytest.mark.parametrize("name", BOMBS)
async def test_compute_bombs_finish_or_are_refused_in_time(tmp_path: Path, name: str) -> None:
    # At 4x the suite's size, so a filter cost that grows with the canvas would show.
    output = tmp_path / "out.png"
    try:
        await run_isolated(
            convert, SUITE / name, output, "svg", _options(1200), ImageLimits(), limits=BOMB_LIMITS
        )
    except MeshError as error:
        # Refused, or stopped by the limit: a typed answer either way, never a crash.
        assert error.reason in {Reason.TIMEOUT, Reason.LIMIT_EXCEEDED, Reason.CORRUPT_INPUT}
        assert not output.exists() or error.reason is not Reason.CORRUPT_INPUT
    else:
        assert Image.open(output).format == "PNG"


def _planted(tmp_path: Path, name: str) -> Path:
    """The SVG copied three folders deep, with every file it names planted in magenta where
    its relative references point."""
    copy = tmp_path / "a" / "b" / "c" / Path(name).name
    copy.parent.mkdir(parents=True)
    shutil.copy(SUITE / name, copy)
    resources = tmp_path / "resources"
    (resources / "images").mkdir(parents=True)
    magenta = Image.new("RGB", (200, 200), (255, 0, 255))
    for picture in ("image.jpg", "images/image.jpg", "image.png"):
        magenta.save(resources / picture)
    drawing = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200">'
        '<rect id="text1" width="200" height="200" fill="#ff00ff"/></svg>'
    )
    for svg in ("image.svg", "image-033.svg", "simple-text.svg"):
        (resources / svg).write_text(drawing)
    (resources / "green.css").write_text("rect { fill: #ff00ff !important; }")
    return copy


def _magenta_pixels(image: Image.Image) -> int:
    red, green, blue = on_white(image).split()
    mask = ImageChops.multiply(
        ImageChops.multiply(
            red.point(lambda value: 255 if value > 200 else 0),
            green.point(lambda value: 255 if value < 60 else 0),
        ),
        blue.point(lambda value: 255 if value > 200 else 0),
    )
    return mask.histogram()[255]


@pytest.mark.parametrize("name", sorted(EXTERNAL))
def test_external_content_is_never_loaded(tmp_path: Path, name: str) -> None:
    copy = _planted(tmp_path, name)
    output = tmp_path / "out.png"
    _render(copy, output, width=200)
    assert _magenta_pixels(Image.open(output)) == 0


def test_planted_content_would_be_seen() -> None:
    assert _magenta_pixels(Image.new("RGB", (4, 4), (255, 0, 255))) == 16
