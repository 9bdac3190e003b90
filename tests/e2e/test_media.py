"""Media through the mesh: a transcode whose progress rises while it runs, checked by ffprobe."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.corpus import CORPUS
from tests.e2e.conftest import auth, wait_for_job


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


# The transcode must run long enough to show several progress steps on any machine: the clip's
# length is chosen from a short clip measured through the same mesh just before (a fast machine
# gets a longer clip, a slow one a shorter), between these bounds.
TARGET_TRANSCODE_SECONDS = 12.0
CALIBRATION_SECONDS = 4
SHORTEST_CLIP_SECONDS = 30
LONGEST_CLIP_SECONDS = 600


async def make_clip(path: Path, seconds: int) -> None:
    await asyncio.to_thread(
        subprocess.run,
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip


async def transcode(http: httpx.AsyncClient, clip: Path) -> str:
    with clip.open("rb") as body:
        response = await http.post(
            "/api/jobs",
            headers=auth(),
            data={"format": "mp4", "compression": "60"},
            files=[("files", ("clip.mp4", body, "video/mp4"))],
        )
    assert response.status_code == 200, response.text
    job_id: str = response.json()["jobId"]
    return job_id


async def progress_events(http: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """Every job update the event stream carries, until the job ends."""
    seen: list[dict[str, Any]] = []
    url = f"/api/jobs/{job_id}/events"
    async with http.stream("GET", url, headers=auth(), timeout=LONGEST_CLIP_SECONDS) as events:
        assert events.status_code == 200
        async for line in events.aiter_lines():
            if line.startswith("data: "):
                job = json.loads(line.removeprefix("data: "))
                if "results" in job:
                    seen.append(job)
    return seen


async def test_progress_rises_during_a_long_transcode(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    short = tmp_path / "short.mp4"
    await make_clip(short, CALIBRATION_SECONDS)
    started = time.monotonic()
    await wait_for_job(http, await transcode(http, short), within=300)
    per_second = (time.monotonic() - started) / CALIBRATION_SECONDS
    seconds = round(min(max(TARGET_TRANSCODE_SECONDS / per_second, SHORTEST_CLIP_SECONDS),
                        LONGEST_CLIP_SECONDS))  # fmt: skip

    clip = tmp_path / "clip.mp4"
    await make_clip(clip, seconds)
    job_id = await transcode(http, clip)
    updates = await progress_events(http, job_id)
    job = updates[-1]
    assert job["status"] == "completed", job
    seen = [update["results"]["files"][0]["progress"] for update in updates]
    assert seen == sorted(seen), seen
    assert len({p for p in seen if 0 < p < 100}) >= 3, (seconds, per_second, seen)

    item = job["results"]["files"][0]
    download = await http.get(item["downloadUrl"], headers=auth())
    info = probe(download.content, tmp_path)
    streams = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[attr-defined]
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert abs(float(info["format"]["duration"]) - seconds) <= 0.1  # type: ignore[index]
    assert abs(item["duration"] - seconds) <= 0.1


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
