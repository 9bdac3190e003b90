"""Comparing images by pixel statistics (never by bytes), decoded by Pillow."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops, ImageStat


def mean_difference(a: Path | Image.Image, b: Path | Image.Image) -> float:
    """Mean absolute difference per channel (0-255) of two same-size RGB images."""
    first = (Image.open(a) if isinstance(a, Path) else a).convert("RGB")
    second = (Image.open(b) if isinstance(b, Path) else b).convert("RGB")
    assert first.size == second.size, (first.size, second.size)
    stat = ImageStat.Stat(ImageChops.difference(first, second))
    return sum(stat.mean) / len(stat.mean)


def orientation_tag(path: Path) -> int:
    value = Image.open(path).getexif().get(0x0112, 1)
    return int(value)
