from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat

from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from services.image.svgsize import (
    DEFAULT_SIDE,
    max_scale,
    sized_by_content,
    with_default_size,
    without_bad_size,
)

NS = 'xmlns="http://www.w3.org/2000/svg"'
SQUARE = '<rect x="0" y="0" width="40" height="40" fill="green"/>'


def _render(tmp_path: Path, svg: str, **options: object) -> Image.Image:
    source = tmp_path / "in.svg"
    source.write_text(svg)
    output = tmp_path / "out.png"
    convert(source, output, "svg", ConversionOptions(format="png", **options), ImageLimits())  # type: ignore[arg-type]
    return Image.open(output)


def test_zero_and_negative_sizes_are_dropped_and_good_ones_kept() -> None:
    assert without_bad_size(b'<svg width="0" height="-5" stroke-width="0">') == (
        b'<svg stroke-width="0">'
    )
    assert without_bad_size(b'<svg width="10" height="50%">') == b'<svg width="10" height="50%">'


def test_default_size_replaces_any_size() -> None:
    assert with_default_size(b'<svg width="0" a="b">') == (
        f'<svg width="{DEFAULT_SIDE}" height="{DEFAULT_SIDE}" a="b">'.encode()
    )


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        (b"<svg>", True),
        (b'<svg width="100%" height="100%">', True),
        (b'<svg width="10" height="10">', False),
        (b'<svg viewBox="0 0 10 10">', False),
    ],
)
def test_sized_by_content_means_no_viewbox_and_no_absolute_size(
    root: bytes, expected: bool
) -> None:
    assert sized_by_content(root + b"</svg>") is expected


def test_morphology_filters_bound_the_render_scale() -> None:
    plain = b'<svg width="200" height="200"><rect/></svg>'
    filtered = b'<svg width="200" height="200"><filter><feMorphology radius="9"/></filter></svg>'
    assert max_scale(plain, 200, 200) is None
    assert max_scale(filtered, 200, 200) == pytest.approx(2.0)


@pytest.mark.parametrize("size", ['width="0" height="0"', 'width="-50" height="-100"', ""])
def test_svg_without_a_usable_size_renders(tmp_path: Path, size: str) -> None:
    rendered = _render(tmp_path, f"<svg {NS} {size}>{SQUARE}</svg>")
    assert rendered.size == (40, 40)
    assert ImageStat.Stat(rendered.convert("RGB")).mean[1] > 100  # the green square


def test_empty_svg_gets_the_default_size(tmp_path: Path) -> None:
    assert _render(tmp_path, f"<svg {NS}></svg>").size == (DEFAULT_SIDE, DEFAULT_SIDE)


def test_viewbox_gives_the_size_and_scales_as_vectors(tmp_path: Path) -> None:
    svg = f'<svg {NS} viewBox="0 0 40 20"><rect width="40" height="20" fill="black"/></svg>'
    rendered = _render(tmp_path, svg, resize="width", resize_width=400)
    assert rendered.size == (400, 200)
    assert ImageStat.Stat(rendered.convert("L")).mean[0] < 5
