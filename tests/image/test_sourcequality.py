"""The quality a JPEG was saved at, estimated from its tables; lossless WebP detection."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from services.image import sourcequality
from tests.corpus import CORPUS


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 98])
def test_jpeg_quality_is_read_back_from_the_tables(tmp_path: Path, quality: int) -> None:
    path = tmp_path / "q.jpg"
    Image.open(CORPUS / "pillow/hopper.png").convert("RGB").save(path, quality=quality)
    estimate = sourcequality.jpeg_quality(path)
    assert estimate is not None and abs(estimate - quality) <= 1


def test_a_file_that_is_not_a_jpeg_has_no_quality(tmp_path: Path) -> None:
    assert sourcequality.jpeg_quality(CORPUS / "pillow/hopper.png") is None
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(b"\xff\xd8\xff")
    assert sourcequality.jpeg_quality(truncated) is None


@pytest.mark.parametrize(("lossless", "icc"), [(True, False), (True, True), (False, True)])
def test_webp_lossless_is_told_from_its_chunks(tmp_path: Path, lossless: bool, icc: bool) -> None:
    image = Image.open(CORPUS / "pillow/hopper.png").convert("RGB")
    buffer = io.BytesIO()
    extra = {"icc_profile": b"\0" * 600} if icc else {}
    image.save(buffer, "WEBP", lossless=lossless, **extra)
    path = tmp_path / "x.webp"
    path.write_bytes(buffer.getvalue())
    assert sourcequality.webp_is_lossless(path) is lossless
    assert not sourcequality.webp_is_lossless(CORPUS / "pillow/hopper.png")
