"""The media worker's tools, each output checked by Debian's ffmpeg/ffprobe (not the PyAV that
wrote it) and, for pictures, by libvips (not the Pillow that wrote them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pyvips
from PIL import Image, ImageChops, ImageStat

from mesh import sandbox
from mesh.errors import MeshError, Reason
from mesh.fields import to_fields
from mesh.tools import catalog, params
from mesh.tools.catalog import Input
from services.media import tools
from services.media.limits import MediaLimits
from services.media.tools import clips as clip_tools
from services.media.tools import inspection, stills, watermark
from tests.media.conftest import SAMPLES, counted_frames, ffmpeg, ffprobe, streams_of

LIMITS = MediaLimits()
MP4 = SAMPLES / "sample.mp4"
INSPECT_SAMPLES = [
    ("sample.mp4", "mp4"),
    ("sample.mkv", "mkv"),
    ("sample.ts", "ts"),
    ("sample.avi", "avi"),
    ("sample.mpg", "mpg"),
    ("sample_ac3.vob", "mpg"),
    ("sample.mp3", "mp3"),
    ("sample.flac", "flac"),
    ("sample.ogg", "ogg"),
    ("sample.wav", "wav"),
]


def _duration(path: Path) -> float:
    return float(ffprobe(path)["format"]["duration"])


def _counted_frames(path: Path) -> int:
    return counted_frames(path)[0]


def _frame(path: Path, seconds: float, out: Path) -> Image.Image:
    """A frame decoded by Debian's ffmpeg (accurate seek: decodes up to `seconds`)."""
    ffmpeg("-i", str(path), "-ss", f"{seconds:.3f}", "-frames:v", "1", str(out))
    return Image.open(out).convert("RGB")


def _difference(a: Image.Image, b: Image.Image) -> float:
    return max(ImageStat.Stat(ImageChops.difference(a, b.resize(a.size))).mean)


def _vips_size(path: Path) -> tuple[int, int]:
    image = pyvips.Image.new_from_file(str(path))
    return image.width, image.height


def test_every_media_tool_of_the_catalog_has_a_function() -> None:
    served = {name for name, tool in catalog.TOOLS.items() if tool.families & catalog.AUDIO_VIDEO}
    assert served == set(tools.TOOLS)


def test_convert_resizes_and_reencodes_at_the_compression_level(tmp_path: Path) -> None:
    output = tmp_path / "out.mov"
    options = params.MediaConvertParams(format="mov", resize="width", resize_width=320)
    outcome = clip_tools.convert(SAMPLES / "sample.avi", output, "avi", options, LIMITS)
    info = ffprobe(output)
    video = streams_of(info, "video")[0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 180)
    assert (outcome.width, outcome.height, outcome.applied_quality) == (320, 180, 75)
    assert abs(_duration(output) - _duration(SAMPLES / "sample.avi")) < 0.1


@pytest.mark.parametrize(("fmt", "codec"), [("mp3", "mp3"), ("m4a", "aac"), ("ogg", "opus")])
def test_extract_audio_encodes_at_the_bitrate(fmt: str, codec: str, tmp_path: Path) -> None:
    output = tmp_path / f"out.{fmt}"
    options = params.ExtractAudioParams(format=fmt, bitrate_kbps=96)
    outcome = clip_tools.extract_audio(MP4, output, "mp4", options, LIMITS)
    info = ffprobe(output)
    assert streams_of(info, "video") == []
    (audio,) = streams_of(info, "audio")
    assert audio["codec_name"] == codec
    bits = float(audio.get("bit_rate") or info["format"]["bit_rate"])
    assert 96_000 * 0.75 < bits < 96_000 * 1.25
    assert abs(_duration(output) - 4.0) < 0.1
    assert outcome.applied_quality == 96


def test_extract_audio_copies_into_lossless_formats_and_refuses_silent_video(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out.flac"
    clip_tools.extract_audio(MP4, output, "mp4", params.ExtractAudioParams(format="flac"), LIMITS)
    assert streams_of(ffprobe(output), "audio")[0]["codec_name"] == "flac"
    with pytest.raises(MeshError) as caught:
        clip_tools.extract_audio(
            clips["silent"], tmp_path / "x.mp3", "mp4", params.ExtractAudioParams(), LIMITS
        )
    assert caught.value.reason is Reason.NO_AUDIO_TRACK
    assert not (tmp_path / "x.mp3").exists()


@pytest.mark.parametrize(
    ("name", "fmt", "written"),
    [
        ("sample.mp4", "mp4", "mp4"),
        ("sample.mkv", "mkv", "mkv"),
        ("sample.ts", "ts", "ts"),
        ("sample.avi", "avi", "mp4"),
        ("sample_ac3.vob", "mpg", "mp4"),
    ],
)
def test_trim_cuts_the_window_frame_accurately(
    name: str, fmt: str, written: str, tmp_path: Path
) -> None:
    source = SAMPLES / name
    output = tmp_path / f"out.{written}"
    trim = params.TrimParams(start=1.0, duration=2.0)
    outcome = clip_tools.trim(source, output, fmt, trim, LIMITS)
    assert outcome.format == written
    assert abs(_duration(output) - 2.0) < 0.1
    rate = 30000 / 1001
    assert abs(_counted_frames(output) - 2.0 * rate) <= 2
    first = _frame(output, 0, tmp_path / "first.png")
    wanted = _frame(source, 1.0, tmp_path / "wanted.png")
    later = _frame(source, 1.5, tmp_path / "later.png")
    assert _difference(first, wanted) < 10 < _difference(first, later)


def test_trim_of_audio_keeps_its_format(tmp_path: Path) -> None:
    output = tmp_path / "out.mp3"
    outcome = clip_tools.trim(
        SAMPLES / "sample.mp3", output, "mp3", params.TrimParams(start=0.5, duration=1.5), LIMITS
    )
    assert outcome.format == "mp3"
    assert streams_of(ffprobe(output), "audio")[0]["codec_name"] == "mp3"
    assert abs(_duration(output) - 1.5) < 0.1


def test_trim_to_another_format_and_past_the_end(tmp_path: Path) -> None:
    output = tmp_path / "out.webm"
    trim = params.TrimParams(start=3.0, duration=10.0, format="webm")
    clip_tools.trim(MP4, output, "mp4", trim, LIMITS)
    assert {s["codec_name"] for s in ffprobe(output)["streams"]} == {"vp9", "opus"}
    assert abs(_duration(output) - 1.0) < 0.1  # the window ends with the media
    with pytest.raises(MeshError) as caught:
        clip_tools.trim(MP4, tmp_path / "x.mp4", "mp4", params.TrimParams(start=9.0), LIMITS)
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "start" in caught.value.detail["fields"]


def test_gif_has_the_asked_width_rate_and_length(tmp_path: Path) -> None:
    output = tmp_path / "out.gif"
    gif = params.GifParams(start=0.5, duration=2.0, width=320, fps=10)
    outcome = clip_tools.gif(MP4, output, "mp4", gif, LIMITS)
    (video,) = streams_of(ffprobe(output), "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("gif", 320, 180)
    assert (outcome.width, outcome.height) == (320, 180)
    assert abs(_counted_frames(output) - 20) <= 1
    assert abs(_duration(output) - 2.0) < 0.1
    first = _frame(output, 0, tmp_path / "first.png")
    assert _difference(first, _frame(MP4, 0.5, tmp_path / "w.png")) < 16


def test_gif_never_enlarges(tmp_path: Path) -> None:
    output = tmp_path / "out.gif"
    clip_tools.gif(MP4, output, "mp4", params.GifParams(width=1280, duration=1), LIMITS)
    assert streams_of(ffprobe(output), "video")[0]["width"] == 640


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "avif"])
def test_thumbnail_is_the_frame_at_the_timestamp(fmt: str, tmp_path: Path) -> None:
    output = tmp_path / f"thumb.{fmt}"
    thumb = params.ThumbnailParams(format=fmt, width=320, height=180, timestamp=2.0)
    outcome = stills.thumbnail(MP4, output, "mp4", thumb, LIMITS)
    assert _vips_size(output) == (320, 180) == (outcome.width, outcome.height)
    decoded = pyvips.Image.new_from_file(str(output)).flatten() if fmt == "png" else None
    picture = Image.open(output).convert("RGB")
    assert decoded is None or (decoded.width, decoded.height) == picture.size
    wanted = _frame(MP4, 2.0, tmp_path / "wanted.png")
    assert (
        _difference(picture, wanted)
        < 12
        < _difference(picture, _frame(MP4, 3.0, tmp_path / "l.png"))
    )


@pytest.mark.parametrize(
    ("fit", "size"), [("cover", (200, 200)), ("contain", (200, 200)), ("inside", (200, 112))]
)
def test_thumbnail_fits(fit: str, size: tuple[int, int], tmp_path: Path) -> None:
    output = tmp_path / "thumb.png"
    thumb = params.ThumbnailParams(format="png", width=200, height=200, fit=fit)
    stills.thumbnail(MP4, output, "mp4", thumb, LIMITS)
    assert _vips_size(output) == size
    if fit == "contain":
        assert pyvips.Image.new_from_file(str(output))(100, 2)[3] == 0  # transparent padding


def test_thumbnail_of_a_rotated_video_is_upright(clips: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "thumb.jpg"
    thumb = params.ThumbnailParams(width=512, height=512, fit="inside", timestamp=0.5)
    stills.thumbnail(clips["rotated"], output, "mp4", thumb, LIMITS)
    assert _vips_size(output) == (384, 512)


def test_poster_frame_is_never_enlarged(tmp_path: Path) -> None:
    big, small = tmp_path / "big.jpg", tmp_path / "small.webp"
    stills.poster_frame(MP4, big, "mp4", params.PosterFrameParams(), LIMITS)
    assert _vips_size(big) == (640, 360)
    poster = params.PosterFrameParams(format="webp", width=320, timestamp=99)
    outcome = stills.poster_frame(MP4, small, "mp4", poster, LIMITS)
    assert _vips_size(small) == (320, 180) and outcome.mime_type == "image/webp"
    last = _frame(MP4, 3.9, tmp_path / "last.png")
    assert _difference(Image.open(small).convert("RGB"), last) < 12  # past the end: last frame


@pytest.mark.parametrize(("name", "fmt"), [("sample.mp4", "mp4"), ("sample.mpg", "mpg")])
def test_storyboard_is_a_grid_of_distinct_frames(name: str, fmt: str, tmp_path: Path) -> None:
    output = tmp_path / "board.png"
    board = params.StoryboardParams(frames=6, columns=3, width=160, format="png")
    outcome = stills.storyboard(SAMPLES / name, output, fmt, board, LIMITS)
    assert _vips_size(output) == (480, 180) == (outcome.width, outcome.height)
    sheet = Image.open(output).convert("RGB")
    tiles = [
        sheet.crop((x * 160, y * 90, x * 160 + 160, y * 90 + 90)) for y in (0, 1) for x in (0, 1, 2)
    ]
    duration = 4.0
    for index in (0, 5):
        wanted = _frame(SAMPLES / name, duration * (index + 0.5) / 6, tmp_path / f"w{index}.png")
        assert _difference(tiles[index], wanted) < 16
    assert _difference(tiles[0], tiles[5]) > 16


@pytest.mark.parametrize(("name", "fmt"), INSPECT_SAMPLES)
def test_inspect_agrees_with_ffprobe(name: str, fmt: str, tmp_path: Path) -> None:
    output = tmp_path / "media.json"
    outcome = inspection.inspect(
        SAMPLES / name, output, fmt, params.InspectParams(filename=name), LIMITS
    )
    assert outcome.mime_type == "application/json"
    media = json.loads(output.read_text())["media"]
    truth = ffprobe(SAMPLES / name)
    videos = streams_of(truth, "video")
    assert media["filename"] == name and media["sizeBytes"] == (SAMPLES / name).stat().st_size
    assert media["kind"] == ("video" if videos else "audio")
    assert (media["width"], media["height"]) == (
        (videos[0]["width"], videos[0]["height"]) if videos else (None, None)
    )
    if "duration" in truth["format"]:
        assert abs(media["duration"] - float(truth["format"]["duration"])) <= 0.05
    else:
        assert media["duration"] is None
    assert len(media["streams"]) == truth["format"]["nb_streams"] == len(truth["streams"])
    assert [s["codec"] for s in media["streams"]] == [s["codec_name"] for s in truth["streams"]]
    assert [s["type"] for s in media["streams"]] == [s["codec_type"] for s in truth["streams"]]


def test_strip_metadata_drops_tags_chapters_and_cover_art(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    outcome = clip_tools.strip_metadata(
        clips["tagged"], output, "mp4", params.StripMetadataParams(), LIMITS
    )
    before, after = ffprobe(clips["tagged"]), ffprobe(output)
    assert before["format"]["tags"]["title"] == "secret title" and len(before["chapters"]) == 2
    tags = after["format"].get("tags", {})
    assert "title" not in tags and "location" not in tags and after["chapters"] == []
    assert [s["codec_name"] for s in after["streams"]] == ["h264", "aac"]  # copied
    assert abs(_duration(output) - _duration(clips["tagged"])) < 0.1
    assert outcome.format == "mp4"
    covered = tmp_path / "out.mp3"
    clip_tools.strip_metadata(
        clips["covered"], covered, "mp3", params.StripMetadataParams(), LIMITS
    )
    assert [s["codec_type"] for s in ffprobe(covered)["streams"]] == ["audio"]


def test_strip_metadata_of_an_avi_copies_into_matroska(tmp_path: Path) -> None:
    output = tmp_path / "out.mkv"
    outcome = clip_tools.strip_metadata(
        SAMPLES / "sample.avi", output, "avi", params.StripMetadataParams(), LIMITS
    )
    assert outcome.format == "mkv"
    assert len(ffprobe(output)["streams"]) == 2


def _region(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    return image.crop(box)


def test_text_watermark_sits_where_positioned(tmp_path: Path) -> None:
    output = tmp_path / "out.mp4"
    mark = params.WatermarkParams(text="convertmesh", position="bottom-right", margin=20)
    outcome = watermark.watermark(MP4, output, "mp4", mark, LIMITS)
    assert (outcome.width, outcome.height) == (640, 360)
    assert abs(_duration(output) - 4.0) < 0.1
    marked, plain = _frame(output, 1.0, tmp_path / "m.png"), _frame(MP4, 1.0, tmp_path / "p.png")
    corner = (640 - 20 - 160, 360 - 20 - 20, 640 - 20, 360 - 20)  # the mark is 160 px wide
    far = (20, 100, 180, 140)
    assert _difference(_region(marked, corner), _region(plain, corner)) > 15
    assert _difference(_region(marked, far), _region(plain, far)) < 6


def test_logo_watermark_is_opaque_at_full_opacity(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (200, 100), (0, 0, 255, 255)).save(logo)
    output = tmp_path / "out.mp4"
    mark = params.WatermarkParams(position="top-left", opacity=1.0, margin=10, watermark_width=100)
    watermark.watermark(SAMPLES / "sample.avi", output, "avi", mark, LIMITS, logo=logo)
    frame = _frame(output, 1.0, tmp_path / "f.png")
    red, green, blue = frame.getpixel((60, 35))  # type: ignore[misc]
    assert blue > 200 and red < 60 and green < 60
    red, green, blue = frame.getpixel((60, 80))  # type: ignore[misc]
    assert red > 200 and blue < 60  # below the 50 px tall logo: the red bar of the test card


def test_watermark_needs_text_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as caught:
        watermark.watermark(MP4, tmp_path / "o.mp4", "mp4", params.WatermarkParams(), LIMITS)
    assert caught.value.reason is Reason.INVALID_FIELD and "text" in caught.value.detail["fields"]


def test_limits_are_checked_before_decoding(tmp_path: Path) -> None:
    tight = MediaLimits(max_duration_seconds=2)
    with pytest.raises(MeshError) as caught:
        stills.thumbnail(MP4, tmp_path / "t.jpg", "mp4", params.ThumbnailParams(), tight)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    board = params.StoryboardParams(frames=100, columns=20, width=1920)
    with pytest.raises(MeshError) as caught:
        stills.storyboard(MP4, tmp_path / "b.jpg", "mp4", board, LIMITS)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


async def test_tools_run_in_the_sandbox_with_progress(tmp_path: Path) -> None:
    seen: list[float] = []
    bounds = sandbox.SandboxLimits(wall_seconds=120, memory_bytes=None)
    output = tmp_path / "out.mp4"
    fields = to_fields(params.TrimParams(start=0.5, duration=2.0))
    outcome = await sandbox.run_isolated(
        tools.run,
        "trim",
        [Input(MP4, "mp4")],
        output,
        fields,
        LIMITS,
        limits=bounds,
        on_progress=seen.append,
    )
    assert outcome.format == "mp4" and abs(_duration(output) - 2.0) < 0.1
    # Progress crossed the sandbox's pipe; how many values depends on the machine's speed (the
    # child sends at most one per interval), so only their range and order are asserted here.
    assert seen and all(0.0 <= value <= 1.0 for value in seen) and seen == sorted(seen)
    with pytest.raises(MeshError) as caught:
        await sandbox.run_isolated(
            tools.run,
            "gif",
            [Input(MP4, "mp4")],
            output,
            {"fps": "99", "width": "x"},
            LIMITS,
            limits=bounds,
        )
    assert caught.value.reason is Reason.INVALID_FIELD
    assert set(caught.value.detail["fields"]) == {"fps", "width"}
