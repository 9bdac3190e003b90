"""Fixtures for the media tests: corpus paths, ffmpeg-generated clips, and an ffprobe reader
(outputs are checked by an independent tool, not by the library that wrote them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path("/work/shared/corpus")
SAMPLES = CORPUS / "go-mediainfo"
TINYTAG = CORPUS / "tinytag"


def ffprobe(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "-show_chapters",
            str(path),
        ],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def counted_frames(path: Path) -> tuple[int, Fraction]:
    """Frames of the first video stream as Debian's ffprobe decodes them, and its frame rate."""
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=nb_read_frames,r_frame_rate", "-of", "json", str(path)),
        ],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    stream = json.loads(result.stdout)["streams"][0]  # MPEG-TS lists it per program too
    return int(stream["nb_read_frames"]), Fraction(stream["r_frame_rate"])


def streams_of(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg/ffprobe (Debian package) are required: run `make system-deps`")


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small clips the corpus lacks: silent, rotated, tagged-with-chapters video; MP3 with cover."""
    root = tmp_path_factory.mktemp("clips")
    silent = root / "silent.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(silent),
    )
    rotated = root / "rotated.mp4"
    ffmpeg("-i", str(silent), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    chapters = root / "chapters.txt"
    chapters.write_text(
        ";FFMETADATA1\ntitle=secret title\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\n"
        "title=one\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=two\n"
    )
    tagged = root / "tagged.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        "-i",
        str(chapters),
        "-map",
        "0",
        "-map",
        "1",
        "-map_metadata",
        "2",
        "-map_chapters",
        "2",
        "-metadata",
        "location=+48.8577+002.2950/",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(tagged),
    )
    cover = root / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(cover))
    covered = root / "covered.mp3"
    ffmpeg(
        "-i",
        str(SAMPLES / "sample.mp3"),
        "-i",
        str(cover),
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-disposition:v",
        "attached_pic",
        str(covered),
    )
    return {"silent": silent, "rotated": rotated, "tagged": tagged, "covered": covered}
