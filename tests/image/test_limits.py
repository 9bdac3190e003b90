from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS

MIB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims a huge greyscale canvas (rows of one byte each)."""
    rows = zlib.compress(b"\x00\x00" * 1000)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )
    return path


def _bombs(tmp_path: Path) -> list[tuple[Path, str]]:
    return [
        (CORPUS / "pillow" / "decompression_bomb.gif", "gif"),
        (CORPUS / "pillow" / "decompression_bomb.ico", "ico"),
        (_png_declaring(tmp_path / "bomb.png", 30000, 30000), "png"),
    ]


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("target", ["png", "gif"])
def test_pixel_bombs_are_rejected_before_decoding(tmp_path: Path, index: int, target: str) -> None:
    source, source_format = _bombs(tmp_path)[index]
    baseline = _rss()
    with pytest.raises(MeshError) as caught:
        convert(
            source,
            tmp_path / f"out.{target}",
            source_format,
            ConversionOptions(format=target),
            ImageLimits(),
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    # Refused from the header: decoding the bomb would have taken gigabytes.
    assert _rss() - baseline < 200 * MIB
    assert str(tmp_path) not in caught.value.message
    assert not (tmp_path / f"out.{target}").exists()


def test_gif_frame_extents_beyond_the_screen_are_clipped_to_it(tmp_path: Path) -> None:
    baseline = _rss()
    outcome = convert(
        CORPUS / "pillow" / "decompression_bomb_extents.gif",
        tmp_path / "out.png",
        "gif",
        ConversionOptions(format="png"),
        ImageLimits(),
    )
    assert (outcome.width, outcome.height) == (100, 100)
    assert _rss() - baseline < 200 * MIB


def test_the_pixel_limit_is_configurable(tmp_path: Path) -> None:
    source = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"
    with pytest.raises(MeshError) as caught:
        convert(
            source,
            tmp_path / "out.png",
            "jpg",
            ConversionOptions(format="png"),
            ImageLimits(max_pixels=1800 * 1200 - 1),
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert caught.value.detail["width"] == 1800


def test_frames_count_against_the_limits_when_animating(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "iss634.gif"
    with pytest.raises(MeshError) as caught:
        convert(
            source,
            tmp_path / "out.gif",
            "gif",
            ConversionOptions(format="gif"),
            ImageLimits(max_frames=10),
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert caught.value.detail["frames"] == 42
    still = convert(
        source,
        tmp_path / "out.png",
        "gif",
        ConversionOptions(format="png"),
        ImageLimits(max_frames=10),
    )
    assert still.width == 245


def test_an_upscale_beyond_the_output_limit_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        convert(
            CORPUS / "pillow" / "hopper.jpg",
            tmp_path / "out.jpg",
            "jpg",
            ConversionOptions(format="jpg", resize="square", resize_width=20000),
            ImageLimits(),
        )
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert caught.value.detail["max_output_pixels"] == 100_000_000


def test_text_chunk_bomb_converts_with_bounded_memory(tmp_path: Path) -> None:
    baseline = _rss()
    try:
        convert(
            CORPUS / "pillow" / "png_decompression_dos.png",
            tmp_path / "out.png",
            "png",
            ConversionOptions(format="png", strip_metadata=True),
            ImageLimits(),
        )
    except MeshError as error:
        assert error.reason in (Reason.CORRUPT_INPUT, Reason.LIMIT_EXCEEDED)
    assert _rss() - baseline < 100 * MIB
