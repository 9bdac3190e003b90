"""TESTPLAN E: workers killed, paused and stopped mid-task, the broker killed mid-stream,
duplicate submissions. Every job must end in exactly one terminal state with its output written
once, and no client may ever see half an output."""

from __future__ import annotations

import asyncio
import hashlib
import io
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from PIL import Image

from launcher.mesh import LocalMesh
from launcher.nats import free_port, start_nats
from mesh.bus import streams
from mesh.tasks.v1 import tasks_pb2
from tests.e2e.chaos_support import (
    ACK,
    OUTPUT_CHUNK,
    OUTPUT_COMMIT,
    RESULT,
    Ledger,
    Tap,
    eventually,
    file_status,
    job_of,
    noisy_jpeg,
    print_logs,
    process_exit,
    spawn_worker,
    start_mesh,
    submit,
    tapped_worker,
    terminal_job,
)
from tests.e2e.conftest import auth, corpus_file

ACK_WAIT = 3.0
OUTAGE_SECONDS = 8.0
AVIF = {"format": "avif"}
STARTED = tasks_pb2.RESULT_KIND_STARTED
SUCCEEDED = tasks_pb2.RESULT_KIND_SUCCEEDED


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    local = start_mesh(tmp_path_factory.mktemp("chaos"))
    yield local
    local.stop()


@pytest.fixture(scope="module")
async def api(chaos: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chaos.http_url, timeout=30) as client:
        yield client


@pytest.fixture
async def ledger(chaos: LocalMesh) -> AsyncIterator[Ledger]:
    assert chaos.nats is not None
    opened = await Ledger.open(chaos.nats.url)
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    local = request.node.funcargs.get("chaos") or request.node.funcargs.get("broker_mesh")
    if local is not None and request.session.testsfailed > failed_before:
        print_logs(local)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return noisy_jpeg(2400, 1600, seed=7)


@pytest.fixture(scope="module")
async def reference(api: httpx.AsyncClient, photo: bytes) -> str:
    """The checksum of an undisturbed run: AVIF encoding here is deterministic."""
    created = await submit(api, "photo.jpg", photo, AVIF)
    assert created.status_code == 200, created.text
    job = await terminal_job(api, created.json()["jobId"], 90)
    assert job["status"] == "completed", job
    return hashlib.sha256(await download(api, job)).hexdigest()


async def download(api: httpx.AsyncClient, job: dict[str, Any], index: int = 0) -> bytes:
    response = await api.get(job["results"]["files"][index]["downloadUrl"], headers=auth())
    assert response.status_code == 200, response.text
    return response.content


def decodes_fully(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.size


def restart_through(local: LocalMesh, tap: Tap, **env: str) -> None:
    local.start_service("image", {**local.environment(), "NATS_URL": tap.url, **env})


def kill(local: LocalMesh, service: str = "image") -> None:
    local.processes[service].kill()


class DownloadWatch:
    """Downloads the job's output over and over while the chaos happens: every answer must be
    'not ready' or the complete, correct file."""

    def __init__(self, api: httpx.AsyncClient, job_id: str, expected_sha: str) -> None:
        self.url = f"/api/jobs/{job_id}/files/0"
        self.expected_sha = expected_sha
        self.statuses: dict[int, int] = {}
        self.wrong: list[str] = []
        self._api = api
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            response = await self._api.get(self.url, headers=auth())
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                sha = hashlib.sha256(response.content).hexdigest()
                if sha != self.expected_sha:
                    self.wrong.append(f"{len(response.content)} bytes, sha {sha[:12]}")
            elif response.status_code >= 500:
                self.wrong.append(f"{response.status_code}: {response.text[:200]}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def started_seen(ledger: Ledger, task_id: str, count: int = 1) -> bool:
    return ledger.results(task_id, STARTED) >= count


@pytest.mark.parametrize("moment", ["before_started", "mid_conversion", "before_commit"])
async def test_worker_killed_mid_task_gives_one_terminal_state_and_whole_output(
    *,
    chaos: LocalMesh,
    api: httpx.AsyncClient,
    ledger: Ledger,
    photo: bytes,
    reference: str,
    moment: str,
) -> None:
    async with tapped_worker(chaos) as tap:
        if moment == "before_started":
            tap.arm(RESULT, lambda: kill(chaos))
        elif moment == "before_commit":
            tap.arm(OUTPUT_COMMIT, lambda: kill(chaos))
        else:
            tap.arm(OUTPUT_CHUNK, lambda: None, occurrence=10**9)  # counts chunks only
        created = await submit(api, "photo.jpg", photo, AVIF)
        assert created.status_code == 200, created.text
        job_id = created.json()["jobId"]
        task_id = f"{job_id}.0"
        watch = DownloadWatch(api, job_id, reference)
        try:
            if moment == "mid_conversion":
                # Killed the moment its STARTED result is seen: the worker is fetching the
                # source or converting it, and has written no output yet.
                await eventually(lambda: started_seen(ledger, task_id), 60, "task started", 0.01)
                kill(chaos)
                assert tap.hits == 0, "an output chunk was written before the kill"
            else:
                fired = await eventually(
                    lambda: asyncio.sleep(0, tap.fired.is_set()), 60, f"the tap firing ({moment})"
                )
                assert fired, tap.hits
            killed_at = time.monotonic()
            assert await process_exit(chaos.processes["image"], 5) == -signal.SIGKILL
            assert (await job_of(api, job_id))["status"] not in ("completed", "failed")
            restart_through(chaos, tap)
            job = await terminal_job(api, job_id, 90)
            redelivered = time.monotonic() - killed_at
        finally:
            await watch.stop()
    assert job["status"] == "completed", job
    output = await download(api, job)
    assert hashlib.sha256(output).hexdigest() == reference
    assert decodes_fully(output) == (2400, 1600)
    assert job["results"]["files"][0]["finalSize"] == len(output)
    assert ledger.terminal_writes(job_id) == 1
    assert ledger.output_commits(job_id) == 1
    assert ledger.results(task_id, SUCCEEDED) == 1
    assert watch.wrong == [], watch.wrong
    assert set(watch.statuses) <= {200, 409}, watch.statuses
    print(f"{moment}: completed {redelivered:.1f} s after the kill; downloads {watch.statuses}")


async def worker_metric(port: int, outcome: str) -> float:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return -1.0
    for line in text.splitlines():
        if line.startswith("convertmesh_tasks_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_worker_killed_after_the_result_but_before_the_ack_is_not_reconverted(
    chaos: LocalMesh, api: httpx.AsyncClient, ledger: Ledger
) -> None:
    async with tapped_worker(chaos) as tap:
        tap.arm(ACK, lambda: kill(chaos))
        created = await submit(api, *corpus_file("pillow/hopper.jpg")[:2], {"format": "webp"})
        job_id = created.json()["jobId"]
        await asyncio.wait_for(tap.fired.wait(), 60)
        assert await process_exit(chaos.processes["image"], 5) == -signal.SIGKILL
        job = await terminal_job(api, job_id, 30)
        assert job["status"] == "completed", job  # the result was durable before the ack

        metrics = free_port()
        restart_through(chaos, tap, METRICS_PORT=str(metrics))

        async def skipped() -> bool:
            return await worker_metric(metrics, "skipped") >= 1

        await eventually(skipped, ACK_WAIT + 45, "the redelivered task skipped via KV")
        assert await worker_metric(metrics, "succeeded") == 0
        await eventually(lambda: consumer_idle(chaos), 60, "no task left pending or unacked")
    assert ledger.output_commits(job_id) == 1
    assert ledger.results(f"{job_id}.0", SUCCEEDED) == 1
    assert ledger.terminal_writes(job_id) == 1
    assert Image.open(io.BytesIO(await download(api, await job_of(api, job_id)))).format == "WEBP"


async def consumer_idle(local: LocalMesh, service: str = "image") -> bool:
    assert local.nats is not None
    nc = await nats.connect(local.nats.url)
    try:
        info = await nc.jetstream().consumer_info(streams.TASKS_STREAM, service)
    finally:
        await nc.close()
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def test_paused_worker_that_lost_its_lease_writes_nothing_when_resumed(
    *,
    chaos: LocalMesh,
    api: httpx.AsyncClient,
    ledger: Ledger,
    photo: bytes,
    reference: str,
    tmp_path: Path,
) -> None:
    first = chaos.processes["image"]
    created = await submit(api, "photo.jpg", photo, AVIF)
    job_id = created.json()["jobId"]
    task_id = f"{job_id}.0"
    await eventually(lambda: started_seen(ledger, task_id), 60, "the first worker took the task")
    first.send_signal(signal.SIGSTOP)
    second = spawn_worker(chaos, tmp_path / "second.log")
    try:
        job = await terminal_job(api, job_id, 90)
        assert job["status"] == "completed", job
        assert await started_seen(ledger, task_id, 2)  # the second worker took it over
        done = (ledger.output_commits(job_id), ledger.results(task_id, SUCCEEDED))
        assert done == (1, 1)
        first.send_signal(signal.SIGCONT)
        second.terminate()
        assert await process_exit(second, 30) == 0
        # The first worker has one slot, busy with the stale task until it gives it up: a new
        # job can only complete once it has.
        probe = await submit(api, *corpus_file("pillow/hopper.jpg")[:2], {"format": "png"})
        assert (await terminal_job(api, probe.json()["jobId"], 90))["status"] == "completed"
    finally:
        first.send_signal(signal.SIGCONT)
        if second.poll() is None:
            second.kill()
    assert ledger.output_commits(job_id) == 1, "the resumed worker overwrote the output"
    assert ledger.results(task_id, SUCCEEDED) == 1, "the resumed worker published a second result"
    assert ledger.terminal_writes(job_id) == 1
    after = await job_of(api, job_id)
    assert after["status"] == "completed"
    assert hashlib.sha256(await download(api, after)).hexdigest() == reference


async def test_sigterm_finishes_the_task_in_flight_fetches_nothing_new_and_exits_0(
    chaos: LocalMesh, api: httpx.AsyncClient, ledger: Ledger, photo: bytes, reference: str
) -> None:
    worker = chaos.processes["image"]
    created = await submit(api, "photo.jpg", photo, AVIF)
    job_id = created.json()["jobId"]
    await eventually(lambda: started_seen(ledger, f"{job_id}.0"), 60, "the worker took the task")
    worker.terminate()
    stopped_at = time.monotonic()
    queued = await submit(api, *corpus_file("pillow/hopper.jpg")[:2], {"format": "png"})
    queued_id = queued.json()["jobId"]
    code = await process_exit(worker, 30)
    drained = time.monotonic() - stopped_at
    assert code == 0, f"exit code {code} after {drained:.1f} s"
    # Finished by the draining worker itself, not by a redelivery.
    assert (await job_of(api, job_id))["status"] == "completed"
    assert ledger.results(f"{job_id}.0", STARTED) == 1
    assert await file_status(api, queued_id) == "pending"
    chaos.start_service("image")
    assert (await terminal_job(api, queued_id, 90))["status"] == "completed"
    job = await job_of(api, job_id)
    assert hashlib.sha256(await download(api, job)).hexdigest() == reference
    print(f"drained and exited 0 in {drained:.1f} s")


async def test_same_idempotency_key_three_times_at_once_and_after_is_one_job(
    chaos: LocalMesh, api: httpx.AsyncClient, ledger: Ledger
) -> None:
    key = {"Idempotency-Key": f"chaos-{time.time_ns()}"}
    name, content, _ = corpus_file("pillow/hopper.jpg")
    answers = await asyncio.gather(
        *(submit(api, name, content, {"format": "png"}, key) for _ in range(3))
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    ids = {a.json()["jobId"] for a in answers}
    assert len(ids) == 1, ids
    job_id = ids.pop()
    assert (await terminal_job(api, job_id, 60))["status"] == "completed"
    again = await submit(api, name, content, {"format": "png"}, key)
    assert again.status_code == 200
    # The replay answers the first answer exactly (issue 15), not the job's current state.
    assert again.json() == {"jobId": job_id, "status": "pending"}
    assert again.headers["idempotent-replayed"] == "true"
    listed = (await api.get("/api/jobs?limit=100", headers=auth())).json()["jobs"]
    assert [j["jobId"] for j in listed].count(job_id) == 1
    assert ledger.results(f"{job_id}.0", SUCCEEDED) == 1
    assert ledger.output_commits(job_id) == 1
    assert ledger.terminal_writes(job_id) == 1


@pytest.fixture
def broker_mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    local = start_mesh(tmp_path)
    yield local
    local.stop()


async def test_broker_killed_mid_stream_loses_no_accepted_job_and_refuses_with_503(
    broker_mesh: LocalMesh,
) -> None:
    local = broker_mesh
    assert local.nats is not None
    pids = {name: process.pid for name, process in local.processes.items()}
    name, content, _ = corpus_file("pillow/hopper.jpg")
    answers: list[tuple[int, float, str | None, str]] = []
    outage = asyncio.Event()
    restarted = asyncio.Event()

    async def client(count: int, api: httpx.AsyncClient) -> None:
        for _ in range(count):
            began = time.monotonic()
            try:
                response = await submit(api, name, content, {"format": "png"})
                answer = (response.status_code, response.headers.get("retry-after"), response.text)
            except httpx.HTTPError as error:
                answer = (0, None, repr(error))
            answers.append((answer[0], time.monotonic() - began, answer[1], answer[2]))
            if len(answers) >= 15:
                outage.set()
            await asyncio.sleep(0.05)

    async def chaos_monkey() -> None:
        await outage.wait()
        assert local.nats is not None
        local.nats.kill()
        # Longer than a JetStream request's timeout (5 s): some submissions must be refused.
        await asyncio.sleep(OUTAGE_SECONDS)
        old = local.nats
        assert local.config.log_dir is not None
        local.nats = await asyncio.to_thread(
            start_nats,
            old.store_dir,
            port=old.port,
            monitor_port=old.monitor_port,
            log_file=local.config.log_dir / "nats.log",
        )
        restarted.set()

    async with httpx.AsyncClient(base_url=local.http_url, timeout=60) as api:
        monkey = asyncio.create_task(chaos_monkey())
        await asyncio.gather(*(client(20, api) for _ in range(3)))
        await monkey
        accepted = [text for status, _, _, text in answers if status == 200]
        refused = [(status, after) for status, _, after, _ in answers if status != 200]
        slowest = max(seconds for _, seconds, _, _ in answers)
        print(
            f"{len(accepted)} accepted, {len(refused)} refused {sorted(set(refused))}, "
            f"slowest answer {slowest:.1f} s"
        )
        assert len(answers) == 60
        assert refused, "the outage refused nothing: the kill missed the stream"
        # Every submission was answered (none timed out at the client): accepted, or refused
        # with 503 and Retry-After.
        assert all(status == 503 and after for status, after in refused), refused
        for text in accepted:
            job_id = httpx.Response(200, text=text).json()["jobId"]
            job = await terminal_job(api, job_id, 120)
            assert job["status"] == "completed" and job["completedFiles"] == 1, job
        health = await api.get("/healthz")
        assert health.status_code == 200
        listed = (await api.get("/api/jobs?limit=100", headers=auth())).json()["jobs"]
        unfinished = [j["jobId"] for j in listed if j["status"] in ("pending", "processing")]
        # A submission refused during the outage may have left a job whose dispatch was cut
        # off (its record written, its task not): every orchestrator dispatches such a job
        # again once it is REDISPATCH_SECONDS (15) old, so it must finish too, never stay.
        for job_id in unfinished:
            job = await terminal_job(api, job_id, 180)
            assert job["status"] == "completed", f"a job nobody was told about: {job}"
    assert {name: process.pid for name, process in local.processes.items()} == pids
    assert local.exited() == {}
