"""Comparing images by pixel statistics (never by bytes), decoded by Pillow."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops, ImageFilter, ImageStat


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


def on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, "white")
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def blurred_difference(a: Path | Image.Image, b: Path | Image.Image, radius: float = 1.0) -> float:
    """Mean absolute difference per channel (0-255) after compositing both on white and a
    Gaussian blur of `radius`: forgives antialiasing and sub-pixel placement of edges, not a
    missing or misplaced shape."""
    first = on_white(Image.open(a) if isinstance(a, Path) else a)
    second = on_white(Image.open(b) if isinstance(b, Path) else b)
    assert first.size == second.size, (first.size, second.size)
    blur = ImageFilter.GaussianBlur(radius)
    stat = ImageStat.Stat(ImageChops.difference(first.filter(blur), second.filter(blur)))
    return sum(stat.mean) / len(stat.mean)
