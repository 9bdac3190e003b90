"""One real mesh for the end-to-end tests: nats-server, orchestrator, workers and gateway as
separate processes on free ports, with a temporary data directory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.mesh import LocalMesh, MeshConfig
from tests.corpus import CORPUS

KEYS = {
    "acme": "key-acme-0123456789",
    "globex": "key-globex-0123456789",
    "initech": "key-initech-0123456789",
}
MAX_ACTIVE_JOBS = 12
# The session mesh signs download links with LINK_KEY and still accepts OLD_LINK_KEY's.
LINK_KEY = "e2e-link-key-current-0123456789"
OLD_LINK_KEY = "e2e-link-key-previous-0123456789"
BROWSER_ORIGIN = "http://127.0.0.1:5173"
TERMINAL = {"completed", "failed", "cancelled"}
SYNC_MAX_BYTES = 8_000_000


@contextlib.contextmanager
def running_mesh(
    data: Path, *, command_prefix: Sequence[str] = (), nats_url: str = "", **extra_env: str
) -> Iterator[LocalMesh]:
    """A whole mesh on free ports with the test keys; its logs are printed if it fails to
    start. `command_prefix` wraps every service (a sandbox); `nats_url` names an external
    NATS instead of a server of its own."""
    config = MeshConfig.ephemeral(
        data, ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()), **extra_env
    )
    config.command_prefix = list(command_prefix)
    config.nats_url = nats_url
    local = LocalMesh(config)
    try:
        local.start()
    except Exception:
        local.stop()
        for log in sorted((data / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("mesh"),
        IMAGE_CONCURRENCY="2",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
        SYNC_MAX_BYTES=str(SYNC_MAX_BYTES),
        MAX_ACTIVE_JOBS_PER_TENANT=str(MAX_ACTIVE_JOBS),
        # The fuzzer invents callback URLs: none may make the suite reach out of the machine.
        OUTBOUND_ALLOW_ONLY="true",
        LINK_SIGNING_KEYS=f"{LINK_KEY},{OLD_LINK_KEY}",
        CORS_ORIGINS=BROWSER_ORIGIN,
    ) as local:
        yield local


@pytest.fixture(scope="session")
async def http(mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.http_url, timeout=30) as client:
        yield client


def auth(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def corpus_file(relative: str) -> tuple[str, bytes, str]:
    path = CORPUS / relative
    return (path.name, path.read_bytes(), "application/octet-stream")


async def create_job(
    http: httpx.AsyncClient,
    files: list[str],
    data: dict[str, str],
    tenant: str = "acme",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        "/api/jobs",
        headers={**auth(tenant), **(headers or {})},
        data=data,
        files=[("files", corpus_file(f)) for f in files],
    )


async def wait_for_job(
    http: httpx.AsyncClient, job_id: str, tenant: str = "acme", within: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await http.get(f"/api/jobs/{job_id}", headers=auth(tenant))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {within} s: {job}")
        await asyncio.sleep(0.2)
