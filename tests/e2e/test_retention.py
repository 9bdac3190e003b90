"""Retention: jobs, sources and outputs expire by bucket TTLs and their storage is released."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from launcher.mesh import LocalMesh, MeshConfig
from mesh.bus import streams
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS, auth, wait_for_job

RETENTION = 4


@pytest.fixture(scope="module")
def short_lived_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    data: Path = tmp_path_factory.mktemp("retention")
    config = MeshConfig.ephemeral(
        data,
        f"acme:{KEYS['acme']}",
        RETENTION_SECONDS=str(RETENTION),
        IMAGE_CONCURRENCY="1",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
    )
    mesh = LocalMesh(config)
    mesh.start()
    yield mesh
    mesh.stop()


async def stored_bytes(url: str) -> dict[str, int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        names = (
            f"OBJ_{streams.BLOBS_BUCKET}",
            f"KV_{streams.JOBS_BUCKET}",
            f"KV_{streams.UPLOADS_BUCKET}",
        )
        return {name: (await js.stream_info(name)).state.bytes for name in names}
    finally:
        await nc.close()


async def test_expired_jobs_are_gone_and_their_storage_released(
    short_lived_mesh: LocalMesh,
) -> None:
    nats_url = short_lived_mesh.environment()["NATS_URL"]
    async with httpx.AsyncClient(base_url=short_lived_mesh.http_url, timeout=30) as http:
        photo = (CORPUS / "exif-orientation-examples/Landscape_1.jpg").read_bytes()
        response = await http.post(
            "/api/jobs",
            headers=auth(),
            data={"format": "png"},
            files=[("files", ("a.jpg", photo, "image/jpeg"))],
        )
        job = await wait_for_job(http, response.json()["jobId"])
        assert job["status"] == "completed"
        used = await stored_bytes(nats_url)
        assert used[f"OBJ_{streams.BLOBS_BUCKET}"] > len(photo)

        deadline = time.monotonic() + RETENTION + 60
        while time.monotonic() < deadline:
            gone = await http.get(f"/api/jobs/{job['jobId']}", headers=auth())
            if gone.status_code == 404:
                break
            await asyncio.sleep(0.5)
        assert gone.status_code == 404
        download = await http.get(job["results"]["files"][0]["downloadUrl"], headers=auth())
        assert download.status_code == 404
        listed = (await http.get("/api/jobs", headers=auth())).json()
        assert job["jobId"] not in {j["jobId"] for j in listed["jobs"]}
    deadline = time.monotonic() + RETENTION + 60
    released = await stored_bytes(nats_url)
    while any(released.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        released = await stored_bytes(nats_url)
    assert released == dict.fromkeys(released, 0), released
