"""Issue 13 item 9: SIGTERM drains every service. Real processes started as `make run` starts
them (launcher.mesh), a task or request in flight when the signal arrives: readiness goes
NOT_SERVING (or the listener closes) first, nothing new is fetched, the work in flight is
finished (or released and finished by the next worker), the process exits 0, nothing is lost.

Every wait is a condition with a generous deadline; "first" is an order of events (readiness
went down while the task's result was still unpublished), never a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.mesh import WORKERS, LocalMesh
from mesh.tasks.v1 import tasks_pb2
from tests.e2e.chaos_support import (
    Ledger,
    eventually,
    file_status,
    noisy_jpeg,
    print_logs,
    process_exit,
    start_mesh,
    submit,
    terminal_job,
)
from tests.e2e.conftest import auth

STARTED = tasks_pb2.RESULT_KIND_STARTED
SUCCEEDED = tasks_pb2.RESULT_KIND_SUCCEEDED
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WITHIN = 180.0  # generous: conversions on a busy 2-core machine
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    local = start_mesh(tmp_path_factory.mktemp("drain"))
    yield local
    local.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A clip that takes the media worker a few seconds, and a short one."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        name: make_clip(folder / f"{name}.mp4", seconds)
        for name, seconds in (("long", 30), ("short", 1))
    }


def make_clip(path: Path, seconds: int) -> bytes:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture
async def api(drained: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=drained.http_url, timeout=60) as client:
        yield client


@pytest.fixture
async def ledger(drained: LocalMesh) -> AsyncIterator[Ledger]:
    assert drained.nats is not None
    opened = await Ledger.open(drained.nats.url)
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    local = request.node.funcargs.get("drained")
    if local is not None and request.session.testsfailed > failed_before:
        print_logs(local)


class HealthWatch:
    """A service's readiness (gRPC health `""`) as it changes, heard through Watch from before
    the signal; `seen` runs when NOT_SERVING first arrives and keeps what it returns."""

    def __init__(self, port: int, seen: Callable[[], Any]) -> None:
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._seen = seen
        self.statuses: list[int] = []
        self.when_not_serving: Any = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        stub = health_pb2_grpc.HealthStub(self._channel)
        with contextlib.suppress(grpc.RpcError):
            request = health_pb2.HealthCheckRequest(service="")
            # Waits for a server that is still starting (a worker just restarted).
            async for answer in stub.Watch(request, wait_for_ready=True):
                if answer.status == NOT_SERVING and NOT_SERVING not in self.statuses:
                    self.when_not_serving = self._seen()
                self.statuses.append(answer.status)

    async def serving(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] == SERVING

    async def not_serving(self) -> bool:
        return NOT_SERVING in self.statuses

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()


def heavy_job(service: str, clips: dict[str, bytes]) -> tuple[str, bytes, dict[str, str]]:
    """A job whose one task keeps `service` busy for seconds."""
    if service == "image":
        return "photo.jpg", noisy_jpeg(2400, 1600, seed=11), {"format": "avif"}
    if service == "media":
        return "clip.mp4", clips["long"], {"format": "mp4", "compression": "60"}
    return "noise.bin", os.urandom(8 * MiB), {"format": "xz"}


def light_job(service: str, clips: dict[str, bytes]) -> tuple[str, bytes, dict[str, str]]:
    if service == "image":
        return "small.jpg", noisy_jpeg(64, 48, seed=3), {"format": "png"}
    if service == "media":
        return "short.mp4", clips["short"], {"format": "mp3"}
    return "small.bin", os.urandom(4096), {"format": "xz"}


async def started(ledger: Ledger, task_id: str, count: int = 1) -> bool:
    return ledger.results(task_id, STARTED) >= count


async def job_id_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


@pytest.mark.parametrize("service", WORKERS)
async def test_sigterm_drains_a_worker_that_finishes_its_task_and_exits_0(
    drained: LocalMesh,
    api: httpx.AsyncClient,
    ledger: Ledger,
    clips: dict[str, bytes],
    service: str,
) -> None:
    worker = drained.processes[service]
    job_id = await job_id_of(await submit(api, *heavy_job(service, clips)))
    task_id = f"{job_id}.0"
    watch = HealthWatch(
        drained.config.health_ports[service], lambda: ledger.results(task_id, SUCCEEDED)
    )
    try:
        await eventually(watch.serving, 60, f"{service} ready")
        await eventually(lambda: started(ledger, task_id), WITHIN, f"{service} took the task")
        worker.terminate()
        await eventually(watch.not_serving, 60, f"{service} NOT_SERVING after SIGTERM")
        # Readiness went down first: while the task's result was still to come.
        assert watch.when_not_serving == 0
        queued_id = await job_id_of(await submit(api, *light_job(service, clips)))
        code = await process_exit(worker, WITHIN)
    finally:
        await watch.close()
    assert code == 0
    job = await terminal_job(api, job_id, 60)
    assert job["status"] == "completed", job
    # Finished by the draining worker itself, once; the job sent after the signal not taken.
    assert ledger.results(task_id, STARTED) == 1
    assert ledger.output_commits(job_id) == 1
    assert await file_status(api, queued_id) == "pending"
    drained.start_service(service)
    assert (await terminal_job(api, queued_id, WITHIN))["status"] == "completed"


async def test_a_task_past_the_drain_time_is_released_and_finished_by_the_next_worker(
    drained: LocalMesh, api: httpx.AsyncClient, ledger: Ledger, clips: dict[str, bytes]
) -> None:
    await stop(drained, "media")
    drained.start_service("media", {**drained.environment("media"), "TASK_DRAIN_SECONDS": "1"})
    worker = drained.processes["media"]
    # VP9 is the slowest encoder the media worker has: 30 s of video takes it many times the 1 s
    # drain on any machine (an H.264 re-encode finished within it once on a quiet machine).
    job_id = await job_id_of(await submit(api, "clip.mp4", clips["long"], {"format": "webm"}))
    task_id = f"{job_id}.0"
    watch = HealthWatch(
        drained.config.health_ports["media"], lambda: ledger.results(task_id, SUCCEEDED)
    )
    try:
        await eventually(watch.serving, 60, "media ready")
        await eventually(lambda: started(ledger, task_id), WITHIN, "the media worker took it")
        worker.terminate()
        code = await process_exit(worker, WITHIN)
        await eventually(watch.not_serving, 10, "NOT_SERVING was heard")
        assert watch.when_not_serving == 0
    finally:
        await watch.close()
    assert code == 0
    assert ledger.results(task_id, SUCCEEDED) == 0, "the VP9 encode finished within the drain"
    drained.start_service("media")
    job = await terminal_job(api, job_id, WITHIN)
    assert job["status"] == "completed", job
    assert ledger.results(task_id, STARTED) == 2  # released, then taken by the next worker
    assert ledger.results(task_id, SUCCEEDED) == 1
    assert ledger.output_commits(job_id) == 1


async def test_sigterm_drains_the_orchestrator_and_its_successor_finishes_the_job(
    drained: LocalMesh, api: httpx.AsyncClient, ledger: Ledger
) -> None:
    orchestrator = drained.processes["orchestrator"]
    job_id = await job_id_of(await submit(api, *heavy_job("image", {})))
    task_id = f"{job_id}.0"
    watch = HealthWatch(drained.grpc_port(), lambda: ledger.results(task_id, SUCCEEDED))
    try:
        await eventually(watch.serving, 60, "orchestrator ready")
        await eventually(lambda: started(ledger, task_id), WITHIN, "the image worker took it")
        orchestrator.terminate()
        await eventually(watch.not_serving, 60, "orchestrator NOT_SERVING after SIGTERM")
        code = await process_exit(orchestrator, 60)
    finally:
        await watch.close()
    assert code == 0
    assert watch.when_not_serving == 0, "the task finished before readiness went down"
    # Meanwhile the worker finishes: its result waits in the stream for the next orchestrator.
    await eventually(
        lambda: _async(ledger.results(task_id, SUCCEEDED)), WITHIN, "the worker's result"
    )
    gone = await api.get(f"/api/jobs/{job_id}", headers=auth())
    assert gone.status_code == 503 and gone.json()["code"] == "UNAVAILABLE"
    drained.start_service("orchestrator")
    await eventually(lambda: healthy(api), WITHIN, "the next orchestrator ready")
    job = await terminal_job(api, job_id, WITHIN)
    assert job["status"] == "completed", job
    assert ledger.output_commits(job_id) == 1
    assert ledger.terminal_writes(job_id) == 1


async def test_sigterm_drains_the_gateway_finishing_the_request_in_flight(
    drained: LocalMesh, api: httpx.AsyncClient
) -> None:
    """The listener closes first (readiness fails: nothing new reaches this process); the
    upload under way is read to its end and answered; exit 0."""
    gateway = drained.processes["gateway"]
    body_sent = asyncio.Event()
    signalled = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        boundary = "----drain"
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\npng\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        yield noisy_jpeg(320, 240, seed=5)[:-2]  # held back: the file is not complete yet
        body_sent.set()
        await signalled.wait()
        yield noisy_jpeg(320, 240, seed=5)[-2:]
        yield f"\r\n--{boundary}--\r\n".encode()

    async with httpx.AsyncClient(base_url=drained.http_url, timeout=60) as own:
        upload = asyncio.create_task(
            own.post(
                "/api/jobs",
                headers={**auth(), "content-type": "multipart/form-data; boundary=----drain"},
                content=body(),
            )
        )
        await asyncio.wait_for(body_sent.wait(), 60)
        assert _accepts(drained.config.http_port)
        gateway.terminate()
        await eventually(
            lambda: _async(not _accepts(drained.config.http_port)),
            30,
            "the gateway stopped accepting connections",
        )
        assert not upload.done()
        signalled.set()
        response = await asyncio.wait_for(upload, 60)
    code = await process_exit(gateway, 60)
    assert code == 0
    assert response.status_code == 200, response.text
    job_id = response.json()["jobId"]
    drained.start_service("gateway")
    await eventually(lambda: healthy(api), WITHIN, "the next gateway ready")
    assert (await terminal_job(api, job_id, WITHIN))["status"] == "completed"


async def stop(local: LocalMesh, service: str) -> None:
    process = local.processes[service]
    process.terminate()
    assert await process_exit(process, WITHIN) == 0


async def healthy(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def _async(value: Any) -> Any:
    return value
