"""MP3 through lameenc: frame parsing, and outputs checked with Debian's ffprobe/ffmpeg against
the ffmpeg CLI's libmp3lame at the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.options import ConversionOptions, Mode
from services.media import codecs
from services.media.lame import frame_length, split_frames
from services.media.limits import MediaLimits
from services.media.pipeline import convert
from tests.media.conftest import ffmpeg, ffprobe, streams_of


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fffb9064", (417, 1152)),  # MPEG-1, 128 kb/s, 44.1 kHz, no padding
        ("fffb9264", (418, 1152)),  # the same with the padding bit
        ("fffbe404", (960, 1152)),  # MPEG-1, 320 kb/s, 48 kHz
        ("fff38064", (208, 576)),  # MPEG-2, 64 kb/s, 22.05 kHz
        ("ffe38064", (417, 576)),  # MPEG-2.5, 64 kb/s, 11.025 kHz
    ],
)
def test_frame_length_follows_the_header(header: str, expected: tuple[int, int]) -> None:
    assert frame_length(bytes.fromhex(header)) == expected


@pytest.mark.parametrize("header", ["00000000", "fffd9064", "fffbf064", "fffb9c64", "ffeb9064"])
def test_frame_length_refuses_what_is_not_a_layer_3_frame(header: str) -> None:
    assert frame_length(bytes.fromhex(header)) is None


def test_split_frames_leaves_a_partial_frame_in_the_buffer() -> None:
    frame = bytes.fromhex("fffb9064") + bytes(413)
    buffer = bytearray(frame * 2 + frame[:100])
    assert [size for _, size in split_frames(buffer)] == [1152, 1152]
    assert bytes(buffer) == frame[:100]


def test_split_frames_rejects_garbage() -> None:
    with pytest.raises(RuntimeError):
        list(split_frames(bytearray(b"not an mp3 frame at all")))


def _sine(path: Path, seconds: int, rate: int, channels: int) -> Path:
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:duration={seconds}:sample_rate={rate}",
        "-ac",
        str(channels),
        str(path),
    )
    return path


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (22050, 1), (8000, 1)])
def test_vbr_output_matches_the_ffmpeg_cli_at_the_same_settings(
    tmp_path: Path, rate: int, channels: int
) -> None:
    source = _sine(tmp_path / "in.wav", 6, rate, channels)
    ours = tmp_path / "ours.mp3"
    convert(source, ours, "wav", ConversionOptions(format="mp3"), MediaLimits())
    cli = tmp_path / "cli.mp3"
    quality = codecs.mp3_vbr_quality(ConversionOptions().compression)
    ffmpeg("-i", str(source), "-c:a", "libmp3lame", "-q:a", str(quality), str(cli))
    mine, theirs = ffprobe(ours), ffprobe(cli)
    audio = streams_of(mine, "audio")[0]
    assert audio["codec_name"] == "mp3"
    assert int(audio["sample_rate"]) == rate
    assert audio["channels"] == channels
    assert abs(float(mine["format"]["duration"]) - float(theirs["format"]["duration"])) < 0.05
    assert abs(ours.stat().st_size - cli.stat().st_size) <= 0.02 * cli.stat().st_size
    ffmpeg("-xerror", "-i", str(ours), "-f", "null", "-")  # decodes without an error


def test_target_size_is_constant_bitrate_near_the_budget(tmp_path: Path) -> None:
    source = _sine(tmp_path / "in.wav", 10, 44100, 2)
    output = tmp_path / "out.mp3"
    options = ConversionOptions(format="mp3", mode=Mode.TARGET_SIZE, target_bytes=100_000)
    convert(source, output, "wav", options, MediaLimits())
    info = ffprobe(output)
    assert output.stat().st_size <= 100_000
    assert abs(float(info["format"]["duration"]) - 10.0) < 0.1
    # CBR: every frame has the bitrate of the first (the Xing frame apart).
    assert 48_000 <= int(streams_of(info, "audio")[0]["bit_rate"]) <= 80_000
