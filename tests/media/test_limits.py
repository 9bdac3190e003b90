from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.media.limits import MediaLimits
from services.media.pipeline import convert
from tests.media.conftest import SAMPLES, ffmpeg


def _refusal(
    source: Path, fmt: str, limits: MediaLimits, tmp_path: Path, out: str = "mp4"
) -> MeshError:
    output = tmp_path / f"out.{out}"
    with pytest.raises(MeshError) as caught:
        convert(source, output, fmt, ConversionOptions(format=out), limits)
    assert not output.exists()
    return caught.value


def test_declared_duration_over_limit_is_refused(tmp_path: Path) -> None:
    error = _refusal(SAMPLES / "sample.mp4", "mp4", MediaLimits(max_duration_seconds=1), tmp_path)
    assert error.reason is Reason.LIMIT_EXCEEDED and error.detail["limit"] == "duration"


def test_undeclared_duration_is_enforced_while_decoding(tmp_path: Path) -> None:
    # A raw MPEG-2 stream has no duration in its header; decoded timestamps trip the limit.
    error = _refusal(SAMPLES / "sample.mpg", "mpg", MediaLimits(max_duration_seconds=1), tmp_path)
    assert error.reason is Reason.LIMIT_EXCEEDED and error.detail["limit"] == "duration"


def test_resolution_over_limit_is_refused(tmp_path: Path) -> None:
    error = _refusal(SAMPLES / "sample.mkv", "mkv", MediaLimits(max_width=320), tmp_path)
    assert error.reason is Reason.LIMIT_EXCEEDED and error.detail["width"] == 640


def test_stream_count_over_limit_is_refused(tmp_path: Path) -> None:
    error = _refusal(SAMPLES / "sample.mp4", "mp4", MediaLimits(max_streams=1), tmp_path)
    assert error.reason is Reason.LIMIT_EXCEEDED and error.detail["streams"] == 2


def test_wav_declaring_two_billion_samples_yields_only_the_samples_present(tmp_path: Path) -> None:
    rate, samples = 8000, 2**31
    data_bytes = samples * 2 & 0xFFFFFFFF or 0xFFFFFFF0
    header = (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )
    source = tmp_path / "huge.wav"
    source.write_bytes(header + bytes(16000))
    outcome = convert(
        source, tmp_path / "out.flac", "wav", ConversionOptions(format="flac"), MediaLimits()
    )
    assert outcome.duration is not None and outcome.duration <= 1.01


def test_oversized_h264_is_refused_from_its_header_without_decoding(tmp_path: Path) -> None:
    source = tmp_path / "big.mp4"
    black = "color=black:size=8192x8192:rate=1:duration=1"
    ffmpeg("-f", "lavfi", "-i", black, "-c:v", "libx264", "-preset", "ultrafast", str(source))
    error = _refusal(source, "mp4", MediaLimits(), tmp_path, out="webm")
    assert error.reason is Reason.LIMIT_EXCEEDED and error.detail["width"] == 8192
