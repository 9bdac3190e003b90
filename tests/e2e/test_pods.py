"""The services run as the pods run them: read-only root filesystem, a user without privileges,
only a scratch tmpfs writable (and /dev/shm, as in a container), TMPDIR pointing at it.

Each service is a separate bubblewrap sandbox (`--ro-bind / /`), like a pod of its own with its
own scratch; NATS runs beside them, like its own pod. The user is uid 10001 inside a user
namespace without capabilities: outside it stays the test's user, because the virtualenv's
interpreter lives under root's home, which another uid cannot enter.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from launcher.mesh import LocalMesh
from tests.corpus import CORPUS
from tests.e2e.conftest import auth, running_mesh, wait_for_job
from tests.e2e.test_ports import scrape

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(BWRAP is None, reason="bubblewrap missing: make system-deps")
PHOTOS = ("exif-orientation-examples/Landscape_6.jpg", "pillow/hopper.jpg")


def pod_sandbox(scratch: Path) -> list[str]:
    """What a container runtime gives the pods of deploy/k8s."""
    assert BWRAP is not None
    return [
        BWRAP,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/dev/shm",
        "--tmpfs", str(scratch),
        "--unshare-user", "--uid", "10001", "--gid", "10001",
        "--die-with-parent",
        "--",
    ]  # fmt: skip


def command(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A mount point that exists (bubblewrap cannot create one on a read-only root); each
    # sandbox mounts its own tmpfs on it.
    path = tmp_path_factory.mktemp("pod") / "scratch"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory, scratch: Path) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("pods"),
        command_prefix=pod_sandbox(scratch),
        SCRATCH_DIR=str(scratch),
        TMPDIR=str(scratch),
        PYTHONDONTWRITEBYTECODE="1",
        IMAGE_CONCURRENCY="2",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
    ) as local:
        yield local


def test_the_sandbox_leaves_only_scratch_writable(scratch: Path, tmp_path: Path) -> None:
    probe = """
import json, os, sys, tempfile
paths = sys.argv[1:]
written = []
for path in paths:
    try:
        with open(os.path.join(path, "probe"), "w") as handle:
            handle.write("x")
        written.append(path)
    except OSError:
        pass
print(json.dumps({"uid": os.getuid(), "written": written, "tmp": tempfile.gettempdir()}))
"""
    places = ["/", "/tmp", str(Path(sys.prefix)), str(Path.cwd()), str(tmp_path), str(scratch)]
    done = subprocess.run(
        [*pod_sandbox(scratch), sys.executable, "-c", probe, *places],
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(done.stdout)
    assert seen == {"uid": 10001, "written": [str(scratch)], "tmp": str(scratch)}
    assert not (scratch / "probe").exists(), "the scratch is the sandbox's own tmpfs"


def test_every_service_runs_inside_the_sandbox(pods: LocalMesh) -> None:
    for name, process in pods.processes.items():
        with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
        assert argv[0].endswith(b"bwrap") and b"--ro-bind" in argv, name
        assert f"services.{name}".encode() in argv, name


async def test_an_image_a_clip_and_an_archive_convert(pods: LocalMesh, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(
        command,
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(clip),
    )  # fmt: skip
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as archive:
        for photo in PHOTOS:
            archive.write(CORPUS / photo, f"photos/{Path(photo).name}")
    uploads = {
        "image": ("hopper.jpg", (CORPUS / "pillow/hopper.jpg").read_bytes(), {"format": "png"}),
        "clip": ("clip.mp4", clip.read_bytes(), {"format": "webm"}),
        "archive": ("photos.zip", photos.getvalue(), {"format": "7z"}),
    }
    async with httpx.AsyncClient(base_url=pods.http_url, timeout=60) as http:

        async def convert(name: str, body: bytes, data: dict[str, str]) -> bytes:
            response = await http.post(
                "/api/jobs", headers=auth(), data=data, files=[("files", (name, body))]
            )
            assert response.status_code == 200, response.text
            job = await wait_for_job(http, response.json()["jobId"], within=240)
            assert job["status"] == "completed", job
            download = await http.get(job["results"]["files"][0]["downloadUrl"], headers=auth())
            assert download.status_code == 200
            return download.content

        image, webm, seven = await asyncio.gather(
            *(convert(*upload) for upload in uploads.values())
        )
    # Each output read by a decoder other than the one that wrote it.
    assert Image.open(io.BytesIO(image)).format == "PNG"
    (tmp_path / "out.webm").write_bytes(webm)
    probe = json.loads(
        await asyncio.to_thread(
            command,
            "ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
            str(tmp_path / "out.webm"),
        )
    )  # fmt: skip
    assert "webm" in probe["format"]["format_name"]
    assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}
    assert float(probe["format"]["duration"]) == pytest.approx(2, abs=0.3)
    (tmp_path / "out.7z").write_bytes(seven)
    listing = (await asyncio.to_thread(command, "bsdtar", "-tf", str(tmp_path / "out.7z"))).split()
    assert {"photos/hopper.jpg", "photos/Landscape_6.jpg"} <= set(listing)
    # Each worker counts its own task on its own metrics port.
    for worker in ("image", "media", "archive"):
        text = scrape(pods.config.metrics_ports[worker])
        assert f'convertmesh_tasks_total{{outcome="succeeded",service="{worker}"}}' in text


def _health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=60, wait_for_ready=True
        )
        return int(answer.status)


def test_workers_answer_grpc_health_and_each_service_has_its_metrics(pods: LocalMesh) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert set(pods.config.health_ports) == {"image", "media", "archive"}
    for port in pods.config.health_ports.values():
        assert _health(port) == serving
        assert _health(port, "liveness") == serving
    assert _health(pods.config.grpc_port, "liveness") == serving
    ports = pods.config.metrics_ports
    assert len(set(ports.values())) == len(ports) == 5
    for name, port in ports.items():
        assert f'convertmesh_service_info{{service="{name}"}} 1.0' in scrape(port), name
