"""Media through the mesh: a transcode whose progress rises while it runs, checked by ffprobe."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx

from tests.corpus import CORPUS
from tests.e2e.conftest import TERMINAL, auth, wait_for_job


def media(name: str, relative: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, (CORPUS / relative).read_bytes(), "application/octet-stream"))


def probe(data: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "probed"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    parsed: dict[str, object] = json.loads(out.stdout)
    return parsed


async def test_progress_rises_during_a_30_second_transcode(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(
        subprocess.run,
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=30",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=30",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(clip),
        ],
        check=True,
    )  # fmt: skip
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"format": "mp4", "compression": "60"},
        files=[("files", ("clip.mp4", clip.read_bytes(), "video/mp4"))],
    )
    job_id = response.json()["jobId"]
    seen: list[int] = []
    while True:
        job = (await http.get(f"/api/jobs/{job_id}", headers=auth())).json()
        seen.append(job["results"]["files"][0]["progress"])
        if job["status"] in TERMINAL:
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "completed", job
    assert seen == sorted(seen), seen
    assert len({p for p in seen if 0 < p < 100}) >= 3, seen

    item = job["results"]["files"][0]
    download = await http.get(item["downloadUrl"], headers=auth())
    info = probe(download.content, tmp_path)
    streams = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[attr-defined]
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert abs(float(info["format"]["duration"]) - 30.0) <= 0.1  # type: ignore[index]
    assert abs(item["duration"] - 30.0) <= 0.1


async def test_video_to_audio_and_audio_to_video(http: httpx.AsyncClient, tmp_path: Path) -> None:
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"formats": '["mp3", "webm"]'},
        files=[
            media("v.mkv", "go-mediainfo/sample.mkv"),
            media("a.flac", "go-mediainfo/sample.flac"),
        ],
    )
    assert response.status_code == 415  # flac -> webm is refused at creation
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"formats": '["mp3", "ogg"]'},
        files=[
            media("v.mkv", "go-mediainfo/sample.mkv"),
            media("a.flac", "go-mediainfo/sample.flac"),
        ],
    )
    job = await wait_for_job(http, response.json()["jobId"])
    assert job["status"] == "completed", job
    codecs = []
    for item in job["results"]["files"]:
        download = await http.get(item["downloadUrl"], headers=auth())
        info = probe(download.content, tmp_path)
        codecs.append([s["codec_name"] for s in info["streams"]])  # type: ignore[attr-defined]
    assert codecs == [["mp3"], ["opus"]]
