"""Copy or re-encode: mp4/mov/webm outputs carry only streams every current browser and phone
plays (codec, profile, bit depth, pixel format, audio codec); anything else is re-encoded to
H.264 8-bit 4:2:0 + AAC (mp4/mov) or VP9 + Opus (webm). Outputs are read back by ffprobe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mesh.options import ConversionOptions
from services.media import codecs
from services.media.limits import MediaLimits
from services.media.pipeline import convert
from tests.media.conftest import SAMPLES, ffmpeg, ffprobe, streams_of

_SECOND = ("-t", "1")
_PICTURE = ("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15")
_TONE = ("-f", "lavfi", "-i", "sine=frequency=440")


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clips a browser or phone would refuse in mp4/webm, made by the ffmpeg CLI."""
    root = tmp_path_factory.mktemp("awkward")
    made = {
        # H.264 High 10 (10-bit) with MP3 audio, in Matroska.
        "high10_mp3.mkv": ("-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-c:a", "libmp3lame"),
        # H.264 4:2:2 (High 4:2:2) with AAC: the video must be re-encoded, the audio copied.
        "h264_422_aac.mp4": ("-c:v", "libx264", "-pix_fmt", "yuv422p", "-c:a", "aac"),
        # HEVC with Opus.
        "hevc_opus.mkv": (
            *("-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"),
            *("-c:a", "libopus"),
        ),
        # VP8 with Vorbis: valid WebM, but not what the webm rule keeps.
        "vp8_vorbis.webm": ("-c:v", "libvpx", "-c:a", "libvorbis"),
        # Already right for mp4: H.264 High 8-bit 4:2:0 + AAC, in Matroska.
        "h264_aac.mkv": ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"),
    }
    paths = {}
    for name, codec_args in made.items():
        path = root / name
        ffmpeg(*_PICTURE, *_TONE, *_SECOND, *codec_args, str(path))
        paths[name] = path
    return paths


def _converted(source: Path, source_format: str, output: Path, fmt: str) -> dict[str, Any]:
    convert(source, output, source_format, ConversionOptions(format=fmt), MediaLimits())
    return ffprobe(output)


def _video(info: dict[str, Any]) -> dict[str, Any]:
    (stream,) = streams_of(info, "video")
    return stream


def _audio(info: dict[str, Any]) -> dict[str, Any]:
    (stream,) = streams_of(info, "audio")
    return stream


def _plays_in_mp4(info: dict[str, Any]) -> None:
    video, audio = _video(info), _audio(info)
    assert video["codec_name"] == "h264"
    assert video["pix_fmt"] == "yuv420p"
    assert video["profile"] in ("Constrained Baseline", "Baseline", "Main", "High")
    assert audio["codec_name"] == "aac" and audio["profile"] == "LC"


@pytest.mark.parametrize("fmt", ["mp4", "mov"])
def test_ten_bit_h264_and_mp3_audio_are_reencoded_for_mp4_and_mov(
    awkward: dict[str, Path], fmt: str, tmp_path: Path
) -> None:
    info = _converted(awkward["high10_mp3.mkv"], "mkv", tmp_path / f"out.{fmt}", fmt)
    _plays_in_mp4(info)


def test_h264_422_is_reencoded_and_its_aac_copied(awkward: dict[str, Path], tmp_path: Path) -> None:
    source = awkward["h264_422_aac.mp4"]
    assert _video(ffprobe(source))["pix_fmt"] == "yuv422p"
    info = _converted(source, "mp4", tmp_path / "out.mov", "mov")
    _plays_in_mp4(info)
    assert _audio(info)["bit_rate"] == _audio(ffprobe(source))["bit_rate"]  # copied


def test_hevc_with_opus_becomes_h264_with_aac(awkward: dict[str, Path], tmp_path: Path) -> None:
    _plays_in_mp4(_converted(awkward["hevc_opus.mkv"], "mkv", tmp_path / "out.mp4", "mp4"))


def test_vp8_and_vorbis_become_vp9_and_opus_in_webm(
    awkward: dict[str, Path], tmp_path: Path
) -> None:
    info = _converted(awkward["vp8_vorbis.webm"], "webm", tmp_path / "out.webm", "webm")
    video, audio = _video(info), _audio(info)
    assert (video["codec_name"], video["pix_fmt"]) == ("vp9", "yuv420p")
    assert audio["codec_name"] == "opus"


def test_streams_players_take_are_copied_unchanged(
    awkward: dict[str, Path], tmp_path: Path
) -> None:
    source = awkward["h264_aac.mkv"]
    info = _converted(source, "mkv", tmp_path / "out.mp4", "mp4")
    _plays_in_mp4(info)
    before = ffprobe(source)
    # A remux keeps the coded frames: same profile, level and frame count as the source.
    for key in ("profile", "level", "pix_fmt", "width", "height"):
        assert _video(info)[key] == _video(before)[key]
    assert _audio(info)["sample_rate"] == _audio(before)["sample_rate"]


def test_the_corpus_mp4_copies_into_mov_byte_rates_unchanged(tmp_path: Path) -> None:
    info = _converted(SAMPLES / "sample.mp4", "mp4", tmp_path / "out.mov", "mov")
    source = ffprobe(SAMPLES / "sample.mp4")
    assert _video(info)["bit_rate"] == _video(source)["bit_rate"]
    assert _audio(info)["bit_rate"] == _audio(source)["bit_rate"]


@pytest.mark.parametrize(
    ("codec", "profile", "pixel_format", "copied"),
    [
        ("h264", "High", "yuv420p", True),
        ("h264", "Constrained Baseline", "yuvj420p", True),
        ("h264", "High 10", "yuv420p10le", False),
        ("h264", "High 4:4:4 Predictive", "yuv444p", False),
        ("hevc", "Main", "yuv420p", False),
        ("av1", "Main", "yuv420p", False),
        ("vp9", "Profile 0", "yuv420p", False),
    ],
)
def test_mp4_copy_rule(codec: str, profile: str, pixel_format: str, copied: bool) -> None:
    assert codecs.copies_video(codecs.TARGETS["mp4"], codec, profile, pixel_format) is copied


@pytest.mark.parametrize(
    ("codec", "profile", "copied"),
    [("aac", "LC", True), ("aac", "HE-AAC", True), ("mp3", "", False), ("opus", "", False)],
)
def test_mp4_audio_copy_rule(codec: str, profile: str, copied: bool) -> None:
    assert codecs.copies_audio(codecs.TARGETS["mp4"], codec, profile) is copied


@pytest.mark.parametrize(
    ("codec", "profile", "pixel_format", "copied"),
    [
        ("vp9", "Profile 0", "yuv420p", True),
        ("vp9", "Profile 2", "yuv420p10le", False),
        ("vp8", "0", "yuv420p", False),
        ("av1", "Main", "yuv420p", False),
    ],
)
def test_webm_copy_rule(codec: str, profile: str, pixel_format: str, copied: bool) -> None:
    assert codecs.copies_video(codecs.TARGETS["webm"], codec, profile, pixel_format) is copied
