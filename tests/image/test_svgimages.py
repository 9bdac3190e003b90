from __future__ import annotations

import base64
import io
import re

from PIL import Image

from services.image.svgimages import decodable
from tests.corpus import CORPUS


def _uri(kind: str, data: bytes) -> bytes:
    return f'<image href="data:image/{kind};base64,'.encode() + base64.b64encode(data) + b'"/>'


def _embedded_png(svg: bytes) -> Image.Image:
    match = re.search(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", svg)
    assert match is not None
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_gif_and_webp_pictures_become_png_with_the_same_pixels() -> None:
    picture = Image.new("RGB", (6, 4), (200, 30, 60))
    for kind, fmt in (("gif", "GIF"), ("webp", "WEBP")):
        encoded = io.BytesIO()
        picture.save(encoded, fmt, lossless=True)
        svg = decodable(b"<svg>" + _uri(kind, encoded.getvalue()) + b"</svg>")
        assert f"image/{kind}".encode() not in svg
        png = _embedded_png(svg)
        assert png.size == (6, 4)
        assert png.convert("RGB").getpixel((3, 2)) == (200, 30, 60)


def test_png_and_jpeg_pictures_are_left_as_they_are() -> None:
    svg = b'<svg><image href="data:image/png;base64,iVBORw0KGgo="/></svg>'
    assert decodable(svg) == svg


def test_a_picture_declaring_a_huge_canvas_is_dropped() -> None:
    bomb = (CORPUS / "pillow" / "decompression_bomb.gif").read_bytes()
    assert decodable(_uri("gif", bomb)) == b'<image href="data:,"/>'


def test_other_bytes_labelled_gif_are_dropped_not_sniffed() -> None:
    inner = b'<svg xmlns="http://www.w3.org/2000/svg" width="5" height="5"/>'
    assert decodable(_uri("gif", inner)) == b'<image href="data:,"/>'
