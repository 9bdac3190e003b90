from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from mesh import sandbox
from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions, Mode
from mesh.outcome import Outcome
from services.media.limits import MediaLimits
from services.media.pipeline import convert
from tests.media.conftest import (
    CORPUS,
    SAMPLES,
    TINYTAG,
    counted_frames,
    ffmpeg,
    ffprobe,
    streams_of,
)

VIDEO_SAMPLES = [
    ("sample.mp4", "mp4"),
    ("sample.mkv", "mkv"),
    ("sample.ts", "ts"),
    ("sample.avi", "avi"),
    ("sample.mpg", "mpg"),
    ("sample_ac3.vob", "mpg"),
]
AUDIO_SAMPLES = [
    ("sample.mp3", "mp3"),
    ("sample.flac", "flac"),
    ("sample.ogg", "ogg"),
    ("sample.wav", "wav"),
]
# VP9 is the slow encoder: two clips in the quick suite, the rest under `slow`.
QUICK_WEBM = {"sample.mp4", "sample.avi"}


def _duration(info: dict[str, Any]) -> float:
    return float(info["format"]["duration"])


def _source_duration(path: Path) -> float:
    info = ffprobe(path)
    if "duration" in info["format"]:
        return _duration(info)
    # A raw elementary stream declares no duration: count its frames.
    frames, rate = counted_frames(path)
    return frames / float(rate)


def _convert(source: Path, output: Path, fmt: str, **options: object) -> Outcome:
    return convert(source, output, fmt, ConversionOptions(**options), MediaLimits())  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "fmt"), VIDEO_SAMPLES)
def test_video_converts_to_h264_aac_mp4(name: str, fmt: str, tmp_path: Path) -> None:
    source = SAMPLES / name
    output = tmp_path / "out.mp4"
    outcome = _convert(source, output, fmt, format="mp4")
    info = ffprobe(output)
    assert "mp4" in info["format"]["format_name"]
    video = streams_of(info, "video")
    assert [s["codec_name"] for s in video] == ["h264"]
    src = ffprobe(source)
    src_video = streams_of(src, "video")[0]
    assert (video[0]["width"], video[0]["height"]) == (src_video["width"], src_video["height"])
    assert len(streams_of(info, "audio")) == len(streams_of(src, "audio"))
    assert all(s["codec_name"] in ("aac", "mp3") for s in streams_of(info, "audio"))
    assert abs(_duration(info) - _source_duration(source)) <= 0.1
    assert outcome.width == video[0]["width"] and outcome.mime_type == "video/mp4"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        pytest.param(n, f, marks=() if n in QUICK_WEBM else pytest.mark.slow)
        for n, f in VIDEO_SAMPLES
    ],
)
def test_video_converts_to_vp9_opus_webm(name: str, fmt: str, tmp_path: Path) -> None:
    source = SAMPLES / name
    output = tmp_path / "out.webm"
    _convert(source, output, fmt, format="webm", resize="email")
    info = ffprobe(output)
    assert info["format"]["format_name"].startswith("matroska")
    assert [s["codec_name"] for s in streams_of(info, "video")] == ["vp9"]
    assert {s["codec_name"] for s in streams_of(info, "audio")} <= {"opus"}
    assert abs(_duration(info) - _source_duration(source)) <= 0.1


@pytest.mark.parametrize(("name", "fmt"), AUDIO_SAMPLES)
@pytest.mark.parametrize(
    ("output_format", "codec"), [("mp3", "mp3"), ("flac", "flac"), ("ogg", "opus")]
)
def test_audio_converts(
    name: str, fmt: str, output_format: str, codec: str, tmp_path: Path
) -> None:
    source = SAMPLES / name
    output = tmp_path / f"out.{output_format}"
    outcome = _convert(source, output, fmt, format=output_format)
    info = ffprobe(output)
    audio = streams_of(info, "audio")
    assert [s["codec_name"] for s in audio] == [codec]
    assert int(audio[0]["sample_rate"]) == 48000 and audio[0]["channels"] == 1
    # MP3 frames pad the end (encoder delay); the other codecs are sample-exact.
    tolerance = 0.1 if codec == "mp3" else 0.05
    assert abs(_duration(info) - _source_duration(source)) <= tolerance
    assert outcome.duration is not None and outcome.width is None


def test_remux_to_mov_copies_streams(tmp_path: Path) -> None:
    output = tmp_path / "out.mov"
    outcome = _convert(SAMPLES / "sample.mp4", output, "mp4", format="mov")
    src, out = ffprobe(SAMPLES / "sample.mp4"), ffprobe(output)
    assert "mov" in out["format"]["format_name"]
    for kind in ("video", "audio"):
        a, b = streams_of(src, kind)[0], streams_of(out, kind)[0]
        assert (a["codec_name"], a.get("profile"), a["bit_rate"]) == (
            b["codec_name"],
            b.get("profile"),
            b["bit_rate"],
        )
    assert outcome.applied_quality is None


def test_compress_job_keeps_format_and_reencodes(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    outcome = _convert(SAMPLES / "sample.mp4", output, "mp4", format="", compression=40)
    info = ffprobe(output)
    assert outcome.format == "mp4" and outcome.applied_quality == 40
    assert output.stat().st_size < (SAMPLES / "sample.mp4").stat().st_size
    assert streams_of(info, "video")[0]["codec_name"] == "h264"


@pytest.mark.parametrize(
    ("resize", "extra", "size"),
    [
        ("email", {}, (600, 400)),
        ("width", {"resize_width": 333}, (332, 222)),
        ("square", {"resize_width": 201}, (200, 200)),
    ],
)
def test_resize_preset_gives_even_dimensions(
    resize: str, extra: dict[str, int], size: tuple[int, int], tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    outcome = _convert(
        SAMPLES / "sample_ac3.vob", output, "mpg", format="mp4", resize=resize, **extra
    )
    video = streams_of(ffprobe(output), "video")[0]
    assert (video["width"], video["height"]) == size == (outcome.width, outcome.height)
    assert video["width"] % 2 == 0 and video["height"] % 2 == 0


def _first_frame(path: Path, image: Path) -> Image.Image:
    ffmpeg("-i", str(path), "-frames:v", "1", str(image))
    return Image.open(image).convert("RGB")


def test_rotated_video_is_turned_upright_like_ffmpeg(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    _convert(clips["rotated"], output, "mp4", format="webm", resize="email")
    info = streams_of(ffprobe(output), "video")[0]
    assert (info["width"], info["height"]) == (240, 320)
    assert not any("rotation" in d for d in info.get("side_data_list", []))
    mine = _first_frame(output, tmp_path / "mine.png")
    reference = _first_frame(clips["rotated"], tmp_path / "reference.png")  # CLI autorotates
    assert mine.size == reference.size
    assert max(ImageStat.Stat(ImageChops.difference(mine, reference)).mean) < 8


def test_video_to_gif_uses_capped_rate_and_width(tmp_path: Path) -> None:
    output = tmp_path / "out.gif"
    outcome = _convert(SAMPLES / "sample.mp4", output, "mp4", format="gif")
    video = streams_of(ffprobe(output), "video")[0]
    assert video["codec_name"] == "gif"
    assert (video["width"], video["height"]) == (480, 270) == (outcome.width, outcome.height)
    assert video["r_frame_rate"] == "12/1"
    frame = _first_frame(output, tmp_path / "frame.png")
    source = _first_frame(SAMPLES / "sample.mp4", tmp_path / "source.png").resize(frame.size)
    assert max(ImageStat.Stat(ImageChops.difference(frame, source)).mean) < 12


def test_strip_metadata_drops_tags_and_chapters(clips: dict[str, Path], tmp_path: Path) -> None:
    kept, stripped = tmp_path / "kept.mov", tmp_path / "stripped.mov"
    _convert(clips["tagged"], kept, "mp4", format="mov")
    _convert(clips["tagged"], stripped, "mp4", format="mov", strip_metadata=True)
    kept_info, stripped_info = ffprobe(kept), ffprobe(stripped)
    assert kept_info["format"]["tags"].get("title") == "secret title"
    assert len(kept_info["chapters"]) == 2
    tags = stripped_info["format"].get("tags", {})
    assert "title" not in tags and "location" not in tags
    assert stripped_info["chapters"] == []


@pytest.mark.parametrize(
    ("output_format", "pictures"), [("mp3", 1), ("flac", 1), ("m4a", 1), ("ogg", 0)]
)
def test_cover_art_is_kept_where_the_format_can_hold_it(
    output_format: str, pictures: int, clips: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / f"out.{output_format}"
    outcome = _convert(clips["covered"], output, "mp3", format=output_format)
    assert len(streams_of(ffprobe(output), "video")) == pictures
    assert outcome.width is None


def test_strip_metadata_drops_cover_art(clips: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "out.mp3"
    _convert(clips["covered"], output, "mp3", format="mp3", compression=60, strip_metadata=True)
    assert streams_of(ffprobe(output), "video") == []
    assert streams_of(ffprobe(output), "audio")[0]["codec_name"] == "mp3"


def test_animated_webp_converts_to_video_with_its_timing(tmp_path: Path) -> None:
    source = CORPUS / "pillow" / "iss634.webp"
    with Image.open(source) as animation:
        total_ms = 0
        for index in range(getattr(animation, "n_frames", 1)):
            animation.seek(index)
            animation.load()  # Pillow sets a WebP frame's duration when it decodes it
            total_ms += animation.info["duration"]
    output = tmp_path / "out.mp4"
    outcome = _convert(source, output, "webp", format="mp4")
    info = ffprobe(output)
    video = streams_of(info, "video")[0]
    assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (244, 244)
    assert abs(float(info["format"]["duration"]) - total_ms / 1000) <= 0.1
    assert outcome.duration is not None and abs(outcome.duration - total_ms / 1000) <= 0.1
    assert not list(tmp_path.glob("*.frames.mkv"))


def test_animated_gif_converts_to_video(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    outcome = _convert(CORPUS / "pillow" / "iss634.gif", output, "gif", format="mp4")
    video = streams_of(ffprobe(output), "video")[0]
    assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (244, 244)
    assert outcome.duration is not None and abs(outcome.duration - 2.83) < 0.15


def test_lossless_mp4_uses_lossless_h264(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    outcome = _convert(SAMPLES / "sample.mkv", output, "mkv", format="mp4", lossless=True)
    video = streams_of(ffprobe(output), "video")[0]
    assert video["profile"] == "High 4:4:4 Predictive"
    assert outcome.applied_quality is None


def _pcm_md5(path: Path) -> str:
    result = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-c:a",
            "pcm_s16le",
            "-f",
            "md5",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout.decode().strip()


def test_lossless_flac_keeps_every_sample(tmp_path: Path) -> None:
    output = tmp_path / "out.flac"
    _convert(SAMPLES / "sample.wav", output, "wav", format="flac", lossless=True)
    assert _pcm_md5(output) == _pcm_md5(SAMPLES / "sample.wav")


def test_lossless_mp3_is_an_invalid_field(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        _convert(SAMPLES / "sample.wav", tmp_path / "out.mp3", "wav", format="mp3", lossless=True)
    assert caught.value.reason is Reason.INVALID_FIELD


@pytest.mark.parametrize(
    ("name", "fmt", "output_format", "target"),
    [("sample.mp4", "mp4", "mp4", 90_000), ("sample.wav", "wav", "mp3", 20_000)],
)
def test_target_size_output_fits_the_budget(
    name: str, fmt: str, output_format: str, target: int, tmp_path: Path
) -> None:
    output = tmp_path / f"out.{output_format}"
    outcome = _convert(
        SAMPLES / name,
        output,
        fmt,
        format=output_format,
        mode=Mode.TARGET_SIZE,
        target_bytes=target,
    )
    assert 0 < output.stat().st_size <= target
    assert outcome.applied_quality is not None  # every lossy output says its quality
    assert abs(_duration(ffprobe(output)) - 4.0) <= 0.1


def test_unreachable_target_size_fails_typed_and_leaves_no_output(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    with pytest.raises(MeshError) as caught:
        _convert(
            SAMPLES / "sample.mp4",
            output,
            "mp4",
            format="mp4",
            mode=Mode.TARGET_SIZE,
            target_bytes=2_000,
        )
    assert caught.value.reason is Reason.TARGET_UNREACHABLE
    assert not output.exists()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("empty_file.mp3", "mp3"),
        ("invalid_file.flac", "flac"),
        ("incomplete.mp3", "mp3"),
        ("mp4_invalid_size_zero.m4a", "m4a"),
        ("106-invalid-streaminfo.flac", "flac"),
    ],
)
def test_broken_media_is_rejected_typed(name: str, fmt: str, tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        _convert(TINYTAG / name, tmp_path / "out.ogg", fmt, format="ogg")
    assert caught.value.reason is Reason.CORRUPT_INPUT
    assert "/" not in caught.value.message


def test_video_without_audio_to_mp3_has_no_audio_track(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(MeshError) as caught:
        _convert(clips["silent"], tmp_path / "out.mp3", "mp4", format="mp3")
    assert caught.value.reason is Reason.NO_AUDIO_TRACK


def test_audio_to_video_format_is_an_unsupported_pair(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        _convert(SAMPLES / "sample.mp3", tmp_path / "out.mp4", "mp3", format="mp4")
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR


def test_progress_rises_to_the_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[float] = []
    monkeypatch.setattr(sandbox, "report_progress", seen.append)
    _convert(SAMPLES / "sample.wav", tmp_path / "out.mp3", "wav", format="mp3")
    assert seen and seen == sorted(seen)
    assert seen[-1] > 0.9 and all(0 <= f <= 1 for f in seen)


def test_compress_keeps_a_wav_it_cannot_shrink_byte_for_byte(tmp_path: Path) -> None:
    source = SAMPLES / "sample.wav"
    output = tmp_path / "out.wav"
    outcome = _convert(source, output, "wav", format="")
    assert output.read_bytes() == source.read_bytes()
    assert outcome.kept_original and outcome.applied_quality is None


def test_compress_defaults_shrink_the_corpus_video(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    outcome = _convert(SAMPLES / "sample.mp4", output, "mp4", format="")
    assert output.stat().st_size < (SAMPLES / "sample.mp4").stat().st_size
    assert not outcome.kept_original and outcome.applied_quality is not None
    video = streams_of(ffprobe(output), "video")[0]
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
