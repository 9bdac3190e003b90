"""Every media tool through the real mesh (nats-server, orchestrator, workers, gateway), each
output checked by a decoder other than the one that wrote it: Debian's ffprobe/ffmpeg for
video, audio and pictures, poppler's pdfinfo/pdftoppm for PDFs. Inputs are small (4 s clips,
pictures of a few hundred pixels) so the module stays quick on two shared cores."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from tests.corpus import CORPUS
from tests.e2e.conftest import auth, wait_for_job
from tests.media.conftest import counted_frames, ffmpeg, ffprobe, streams_of

MP4 = CORPUS / "go-mediainfo" / "sample.mp4"  # 640x360, 4.0 s, h264 + aac
MP3 = CORPUS / "go-mediainfo" / "sample.mp3"
TAGGED_FLAC = CORPUS / "tinytag" / "flac1sMono.flac"
GPS_JPEG = CORPUS / "pillow" / "exif_gps.jpg"
PDF = CORPUS / "small" / "pdf.pdf"
BYTES = {"Accept": "application/octet-stream"}
INSPECTED = ["go-mediainfo/sample.mp4", "go-mediainfo/sample.mkv", "go-mediainfo/sample.mp3"]


def _png(size: tuple[int, int], colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def _quadrants() -> bytes:
    """200x100: red, green on top; blue, white below."""
    picture = Image.new("RGB", (200, 100))
    for box, colour in [
        ((0, 0, 100, 50), (255, 0, 0)),
        ((100, 0, 200, 50), (0, 255, 0)),
        ((0, 50, 100, 100), (0, 0, 255)),
        ((100, 50, 200, 100), (255, 255, 255)),
    ]:
        picture.paste(colour, box)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def _file(name: str, data: bytes, part: str = "file") -> tuple[str, tuple[str, bytes, str]]:
    return (part, (name, data, "application/octet-stream"))


async def _run(
    http: httpx.AsyncClient,
    tool: str,
    files: list[tuple[str, tuple[str, bytes, str]]],
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        f"/api/media/{tool}",
        headers={**auth(), **(headers or {})},
        data=data or {},
        files=files,
        timeout=90,
    )


async def _output(
    http: httpx.AsyncClient,
    tool: str,
    files: list[tuple[str, tuple[str, bytes, str]]],
    data: dict[str, str],
    path: Path,
) -> Path:
    """The tool's output as bytes (Accept: application/octet-stream), written to `path`."""
    response = await _run(http, tool, files, data, BYTES)
    assert response.status_code == 200, response.text
    return _saved(path, response.content)


def _saved(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _app1_segments(path: Path) -> list[bytes]:
    """The JPEG's APP1 segments (EXIF, XMP) as its markers lay them out: no decoder needed."""
    data, found, at = path.read_bytes(), [], 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if data[at + 1] == 0xE1:
            found.append(data[at + 4 : at + 2 + length])
        at += 2 + length
    return found


def _poppler_height(pdf: Path, width: int, folder: Path) -> int:
    """The first page's height when poppler renders it `width` pixels wide."""
    subprocess.run(
        ["pdftoppm", "-png", "-f", "1", "-l", "1", "-scale-to-x", str(width), "-scale-to-y",
         "-1", str(pdf), str(folder / "truth")],
        check=True,
    )  # fmt: skip
    return Image.open(next(folder.glob("truth*.png"))).height


def _decoded(path: Path, tmp_path: Path) -> Image.Image:
    """A picture as Debian's ffmpeg decodes it (to a PNG that Pillow only reads)."""
    png = tmp_path / f"{path.stem}-decoded.png"
    ffmpeg("-i", str(path), "-frames:v", "1", str(png))
    return Image.open(png).convert("RGB")


def _frame_at(path: Path, seconds: float, tmp_path: Path) -> Image.Image:
    png = tmp_path / f"{path.stem}-{seconds:g}.png"
    ffmpeg("-i", str(path), "-ss", f"{seconds:.3f}", "-frames:v", "1", str(png))
    return Image.open(png).convert("RGB")


def _size(path: Path) -> tuple[int, int]:
    video = streams_of(ffprobe(path), "video")[0]
    return int(video["width"]), int(video["height"])


def _duration(path: Path) -> float:
    return float(ffprobe(path)["format"]["duration"])


def _mean_difference(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    difference = ImageChops.difference(a.crop(box), b.crop(box))
    return sum(ImageStat.Stat(difference).mean) / 3


def _pdfinfo(path: Path) -> dict[str, str]:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    return {
        k.strip(): v.strip()
        for k, _, v in (line.partition(":") for line in out.stdout.splitlines())
    }


async def test_convert_resizes_video(http: httpx.AsyncClient, tmp_path: Path) -> None:
    data = {"format": "mov", "resize": "width", "resizeWidth": "320"}
    out = await _output(
        http, "convert", [_file("clip.mp4", MP4.read_bytes())], data, tmp_path / "o.mov"
    )
    assert _size(out) == (320, 180)
    assert abs(_duration(out) - 4.0) <= 0.1
    assert ffprobe(out)["format"]["format_name"].startswith("mov")


async def test_extract_audio_is_an_mp3_of_the_clips_length(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"bitrateKbps": "128"}
    out = await _output(
        http, "extract-audio", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "a.mp3"
    )
    info = ffprobe(out)
    assert [s["codec_name"] for s in info["streams"]] == ["mp3"]
    assert abs(float(info["format"]["duration"]) - 4.0) <= 0.1


async def test_trim_keeps_the_span_and_the_format(http: httpx.AsyncClient, tmp_path: Path) -> None:
    data = {"start": "1", "duration": "2"}
    out = await _output(http, "trim", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "t.mp4")
    assert abs(_duration(out) - 2.0) <= 0.1
    assert [s["codec_type"] for s in ffprobe(out)["streams"]] == ["video", "audio"]


async def test_gif_has_the_asked_width_and_frame_count(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"start": "0.5", "duration": "1", "width": "160", "fps": "10"}
    out = await _output(http, "gif", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "g.gif")
    assert _size(out) == (160, 90)
    frames, _ = counted_frames(out)
    assert frames == 10


async def test_thumbnail_of_a_video_frame_and_of_an_image(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"width": "96", "height": "96", "timestamp": "2"}
    video = await _output(
        http, "thumbnail", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "v.jpg"
    )
    assert _size(video) == (96, 96)
    data = {"width": "50", "height": "80", "fit": "inside", "format": "png"}
    still = await _output(
        http, "thumbnail", [_file("q.png", _quadrants())], data, tmp_path / "s.png"
    )
    assert _size(still) == (50, 25)  # inside the box, the aspect kept


async def test_poster_frame_is_the_frame_at_the_time(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"timestamp": "3", "width": "640", "format": "png"}
    out = await _output(
        http, "poster-frame", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "p.png"
    )
    assert _size(out) == (640, 360)
    truth = _frame_at(MP4, 3.0, tmp_path)
    early = _frame_at(MP4, 0.5, tmp_path)
    poster = _decoded(out, tmp_path)
    whole = (0, 0, 640, 360)
    assert _mean_difference(poster, truth, whole) < _mean_difference(poster, early, whole)


async def test_storyboard_is_a_grid_of_tiles(http: httpx.AsyncClient, tmp_path: Path) -> None:
    data = {"frames": "6", "columns": "3", "width": "100"}
    out = await _output(
        http, "storyboard", [_file("c.mp4", MP4.read_bytes())], data, tmp_path / "s.jpg"
    )
    assert _size(out) == (300, 2 * 56)


@pytest.mark.parametrize("relative", INSPECTED)
async def test_inspect_agrees_with_ffprobe(http: httpx.AsyncClient, relative: str) -> None:
    source = CORPUS / relative
    response = await _run(http, "inspect", [_file(source.name, source.read_bytes())])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    media: dict[str, Any] = response.json()["media"]
    truth = ffprobe(source)
    videos = streams_of(truth, "video")
    assert media["filename"] == source.name and media["sizeBytes"] == source.stat().st_size
    assert (media["width"], media["height"]) == (
        (videos[0]["width"], videos[0]["height"]) if videos else (None, None)
    )
    assert abs(media["duration"] - float(truth["format"]["duration"])) <= 0.05
    assert [s["codec"] for s in media["streams"]] == [s["codec_name"] for s in truth["streams"]]
    assert len(media["streams"]) == truth["format"]["nb_streams"]


async def test_strip_metadata_of_an_image_drops_exif_and_keeps_pixels(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    assert any(seg.startswith(b"Exif") for seg in _app1_segments(GPS_JPEG))
    out = await _output(
        http, "strip-metadata", [_file("gps.jpg", GPS_JPEG.read_bytes())], {}, tmp_path / "s.jpg"
    )
    assert _app1_segments(out) == []
    assert _size(out) == Image.open(GPS_JPEG).size
    assert not Image.open(out).getexif()


async def test_strip_metadata_of_audio_drops_its_tags(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    before = ffprobe(TAGGED_FLAC)["format"]["tags"]
    assert before["ARTIST"] == "art"
    out = await _output(
        http, "strip-metadata", [_file("t.flac", TAGGED_FLAC.read_bytes())], {}, tmp_path / "s.flac"
    )
    tags = {k.lower() for k in ffprobe(out)["format"].get("tags", {})}
    assert not tags & {"artist", "album", "title", "comments", "genre", "date"}
    assert abs(_duration(out) - _duration(TAGGED_FLAC)) <= 0.1


async def test_image_to_pdf_has_a_page_per_image(http: httpx.AsyncClient, tmp_path: Path) -> None:
    files = [_file("a.png", _png((300, 200)), "files"), _file("b.png", _quadrants(), "files")]
    out = await _output(http, "image-to-pdf", files, {"pageSize": "a4"}, tmp_path / "p.pdf")
    info = _pdfinfo(out)
    assert info["Pages"] == "2"
    assert "(A4)" in info["Page size"]  # the first page, landscape for a landscape picture


async def test_pdf_preview_renders_the_page_at_the_width(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"width": "300", "format": "png"}
    out = await _output(
        http, "pdf-preview", [_file("d.pdf", PDF.read_bytes())], data, tmp_path / "p.png"
    )
    width, height = _size(out)
    assert width == 300 and abs(height - _poppler_height(PDF, 300, tmp_path)) <= 1


async def test_watermark_text_marks_an_image_where_positioned(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    source = _png((400, 300))
    data = {"text": "CONVERTMESH", "position": "top-left", "margin": "10", "opacity": "1",
            "watermarkWidth": "150", "format": "png"}  # fmt: skip
    out = await _output(http, "watermark", [_file("g.png", source)], data, tmp_path / "w.png")
    marked = _decoded(out, tmp_path)
    plain = Image.new("RGB", (400, 300), (128, 128, 128))
    assert _mean_difference(marked, plain, (10, 10, 160, 40)) > 10
    assert _mean_difference(marked, plain, (200, 150, 400, 300)) < 1


async def test_watermark_logo_marks_a_video_where_positioned(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    logo = _png((64, 64), (255, 0, 255))
    data = {"position": "bottom-right", "margin": "16", "opacity": "1", "watermarkWidth": "64"}
    files = [_file("c.mp4", MP4.read_bytes()), _file("logo.png", logo, "watermarkFile")]
    out = await _output(http, "watermark", files, data, tmp_path / "w.mp4")
    assert abs(_duration(out) - 4.0) <= 0.1 and _size(out) == (640, 360)
    marked, plain = _frame_at(out, 2.0, tmp_path), _frame_at(MP4, 2.0, tmp_path)
    corner = (640 - 16 - 60, 360 - 16 - 60, 640 - 20, 360 - 20)
    red, green, blue = marked.crop(corner).getpixel((20, 20))  # type: ignore[misc]
    assert green < 80 < min(red, blue)  # magenta
    assert _mean_difference(marked, plain, corner) > 40
    assert _mean_difference(marked, plain, (0, 0, 300, 150)) < 8  # re-encoded, unmarked


async def test_transform_crops_rotates_and_re_encodes(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = {"cropLeft": "100", "cropTop": "0", "cropWidth": "100", "cropHeight": "50",
            "format": "png"}  # fmt: skip
    cropped = await _output(
        http, "transform", [_file("q.png", _quadrants())], data, tmp_path / "c.png"
    )
    assert _size(cropped) == (100, 50)
    assert _decoded(cropped, tmp_path).getpixel((50, 25)) == (0, 255, 0)
    data = {"rotate": "90", "format": "webp", "quality": "90"}
    turned = await _output(
        http, "transform", [_file("q.png", _quadrants())], data, tmp_path / "r.webp"
    )
    assert _size(turned) == (100, 200)


async def _async_output(
    http: httpx.AsyncClient, tool: str, files: list[Any], data: dict[str, str]
) -> bytes:
    response = await _run(http, tool, files, {**data, "async": "true"})
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "pending" and created["tool"] == tool
    job = await wait_for_job(http, created["jobId"])
    assert job["status"] == "completed" and job["tool"] == tool, job
    download = await http.get(f"/api/jobs/{created['jobId']}/files/0", headers=auth())
    assert download.status_code == 200
    return download.content


@pytest.mark.parametrize(
    ("tool", "files", "data"),
    [
        ("thumbnail", [_file("q.png", _quadrants())], {"width": "40", "height": "40"}),
        ("transform", [_file("q.png", _quadrants())], {"rotate": "180", "format": "png"}),
        ("gif", [_file("c.mp4", MP4.read_bytes())], {"duration": "0.5", "width": "64"}),
    ],
)
async def test_sync_and_async_runs_give_the_same_output(
    http: httpx.AsyncClient, tool: str, files: list[Any], data: dict[str, str]
) -> None:
    synchronous = await _run(http, tool, files, data)
    assert synchronous.status_code == 200, synchronous.text
    (item,) = synchronous.json()["files"]
    inline = base64.b64decode(item["downloadUrl"].split(",", 1)[1])
    assert inline == await _async_output(http, tool, files, data)


async def test_a_tool_job_is_listed_with_the_others(http: httpx.AsyncClient) -> None:
    response = await _run(
        http, "trim", [_file("c.mp4", MP4.read_bytes())], {"duration": "0.5", "async": "true"}
    )
    job_id = response.json()["jobId"]
    listing = await http.get("/api/jobs", headers=auth(), params={"limit": 100})
    listed = {job["jobId"]: job for job in listing.json()["jobs"]}
    assert listed[job_id]["jobType"] == "tool" and listed[job_id]["tool"] == "trim"
    job = await wait_for_job(http, job_id)
    (item,) = job["results"]["files"]
    assert item["filename"] == "c.mp4" and abs(item["duration"] - 0.5) <= 0.1


async def test_every_bad_field_of_a_tool_is_in_one_400(http: httpx.AsyncClient) -> None:
    data = {"fps": "300", "width": "wide", "start": "-1", "async": "maybe"}
    response = await _run(http, "gif", [_file("c.mp4", MP4.read_bytes())], data)
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body["detail"], str) and body["code"] == "INVALID_FIELD"
    assert {item["field"] for item in body["fields"]} == {"fps", "width", "start", "async"}


async def test_a_family_the_tool_does_not_take_is_415(http: httpx.AsyncClient) -> None:
    response = await _run(http, "gif", [_file("a.mp3", MP3.read_bytes())])
    assert response.status_code == 415 and "gif" in response.json()["error"]
    response = await _run(http, "pdf-preview", [_file("q.png", _quadrants())])
    assert response.status_code == 415


async def test_a_watermark_needs_text_or_a_logo(http: httpx.AsyncClient) -> None:
    response = await _run(http, "watermark", [_file("q.png", _quadrants())])
    assert response.status_code == 400 and response.json()["fields"][0]["field"] == "text"


async def test_an_unknown_tool_is_404_and_not_offered_routes_are_501(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.post("/api/media/sharpen", headers=auth())).status_code == 404
    assert (await http.get("/api/nothing-here", headers=auth())).status_code == 404
    for method, path in [
        ("GET", "/api/files"),
        ("POST", "/api/uploads/multipart"),
        ("GET", "/api/folders/1"),
        ("POST", "/api/workflows"),
        ("POST", "/api/ai/remove-background"),
        ("POST", "/api/video/compress"),
        ("GET", "/api/cdn/x.png"),
    ]:
        keyless = await http.request(method, path)
        assert keyless.status_code == 401, path
        response = await http.request(method, path, headers=auth())
        body = response.json()
        assert (response.status_code, body["code"]) == (501, "NOT_IMPLEMENTED"), path
        assert "not offered" in body["error"] and body["meta"]["feature"]


async def test_a_cloud_source_is_501_naming_what_is_not_offered(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/transfer", headers=auth(), json={"cloudSource": {"provider": "s3", "key": "a"}}
    )
    assert response.status_code == 501
    assert "Google Drive" in response.json()["error"] and "S3" in response.json()["error"]
    form = await _run(http, "thumbnail", [], {"cloudSource": "dropbox"})
    assert form.status_code == 501


async def test_a_json_tool_request_without_file_or_url_names_the_file(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/api/media/trim", headers=auth(), json={"duration": 2})
    assert response.status_code == 400
    assert [item["field"] for item in response.json()["fields"]] == ["files"]
