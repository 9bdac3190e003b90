"""`make run`'s launcher: the whole mesh as one foreground process that restarts what dies
(every service, NATS too) while jobs run, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.mesh import LocalMesh, MeshConfig
from launcher.nats import free_port
from tests.e2e.chaos_support import MixedJob, mixed_job, settled_job, submit_until_answered
from tests.e2e.conftest import KEYS

ROOT = Path(__file__).resolve().parents[2]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_for(predicate: object, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def free_block(size: int, rng: random.Random) -> int:
    """The first of `size` consecutive free ports, below the kernel's ephemeral range (where
    `free_port` and every outgoing connection take theirs, so none of them can land inside
    the block before the launcher's services bind it)."""
    while True:
        base = rng.randrange(20000, 30000)
        try:
            with contextlib.ExitStack() as held:
                for port in range(base, base + size):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def start_launcher(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """`make run` with its output (the launcher's and every service's) in `output`."""
    with output.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "launcher"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )


def launcher_child(launcher: subprocess.Popen[bytes], marker: str) -> psutil.Process | None:
    """The launcher's child whose command line holds `marker` (a service module or
    nats-server)."""
    for child in psutil.Process(launcher.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if marker in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                return child
    return None


def kill_tree(launcher: subprocess.Popen[bytes]) -> None:
    """SIGKILLs the launcher and every process under it: a failed test leaves nothing running."""
    with contextlib.suppress(psutil.NoSuchProcess):
        tree = psutil.Process(launcher.pid).children(recursive=True)
        launcher.kill()
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(tree, timeout=30)
    launcher.wait()


VICTIMS = {
    "image": "services.image",
    "media": "services.media",
    "archive": "services.archive",
    "orchestrator": "services.orchestrator",
    "gateway": "services.gateway",
    "nats": "nats-server",
}


async def test_the_launcher_restarts_each_service_killed_while_jobs_run_and_stays_up(
    tmp_path: Path,
) -> None:
    port = free_port()
    output = tmp_path / "launcher.out"
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT=str(port),
        GRPC_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        # The first of 5 and of 3 consecutive ports (one per service).
        METRICS_PORT=str(free_block(5, random.Random())),
        HEALTH_PORT=str(free_block(3, random.Random())),
        API_KEYS=f"acme:{KEYS['acme']}",
        TASK_ACK_WAIT_SECONDS="3",
        REDISPATCH_SECONDS="2",
    )
    launcher = start_launcher(env, output)
    health = f"http://127.0.0.1:{port}/healthz"
    rng = random.Random(13)
    submissions: list[asyncio.Task[tuple[MixedJob, httpx.Response | None]]] = []
    streaming = True

    answered_numbers: list[int] = []
    progress = asyncio.Condition()

    async def send(job: MixedJob, key: str, number: int) -> tuple[MixedJob, httpx.Response | None]:
        response = await submit_until_answered(http, job, key, within=180)
        async with progress:
            answered_numbers.append(number)
            progress.notify_all()
        return job, response

    async def stream() -> None:
        number = 0
        while streaming:
            job = mixed_job(rng, number)
            submissions.append(asyncio.create_task(send(job, f"launcher-{number}", number)))
            number += 1
            await asyncio.sleep(0.5)

    try:
        assert await asyncio.to_thread(
            wait_for, lambda: "convertmesh is up" in output.read_text(), 180
        ), output.read_text()[-3000:]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            sender = asyncio.create_task(stream())
            for name, marker in VICTIMS.items():
                victim = launcher_child(launcher, marker)
                assert victim is not None, name
                victim.kill()

                def back(marker: str = marker, old: int = victim.pid) -> bool:
                    again = launcher_child(launcher, marker)
                    return again is not None and again.pid != old and status_of(health) == 200

                assert await asyncio.to_thread(wait_for, back, 120), f"{name} not back"
                # Jobs flow through the restarted service: one sent after it is back is answered.
                since = len(submissions)

                def flowed(since: int = since) -> bool:
                    return any(number >= since for number in answered_numbers)

                async with asyncio.timeout(180), progress:
                    await progress.wait_for(flowed)
            streaming = False
            await sender
            answered = await asyncio.gather(*submissions)
            outcomes: dict[str, int] = {}
            for job, response in answered:
                assert response is not None and response.status_code == 200, (job.name, response)
                settled = await settled_job(http, response.json()["jobId"], within=180)
                assert settled is not None, f"{job.name} never finished"
                assert settled["status"] == job.expected, settled
                outcomes[job.kind] = outcomes.get(job.kind, 0) + 1
        print(f"{len(answered)} jobs, every one as expected: {outcomes}")
        assert {"image", "media", "archive"} <= set(outcomes)
        assert launcher.poll() is None, "the launcher stopped"
        said = output.read_text()
        for name in VICTIMS:
            assert f"launcher: restarting {name}" in said, name
        children = psutil.Process(launcher.pid).children()
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
    finally:
        streaming = False
        if launcher.poll() is None:
            kill_tree(launcher)
        print(output.read_text()[-4000:])


def test_launcher_stops_promptly_when_asked_during_start_up(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        API_KEYS="acme:key",
        ORCHESTRATOR_ADDR=f"127.0.0.1:{free_port()}",  # never healthy: start-up waits
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: len(psutil.Process(launcher.pid).children()) >= 6, 20)
        launcher.send_signal(signal.SIGTERM)
        # Promptly: start-up alone would wait 60 s for a healthy mesh.
        assert launcher.wait(30) == 0
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)


def test_start_waits_for_a_worker_that_died_at_start_to_be_restarted_and_ready(
    tmp_path: Path,
) -> None:
    """The image worker's health port is taken when the mesh starts, so the worker dies at
    start; the port is given back once it has. `start` returns only after the worker was
    restarted and serves readiness: before, it returned on the gateway's /healthz alone and
    left a dead worker behind it."""
    config = MeshConfig.ephemeral(tmp_path, f"acme:{KEYS['acme']}")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", config.health_ports["image"]))
    blocker.listen()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("image exited"):
            blocker.close()

    local = LocalMesh(config)
    try:
        local.start(ready_timeout=240, say=say)
        assert any(line.startswith("image exited") for line in lines), lines
        assert local.processes["image"].poll() is None
        with grpc.insecure_channel(f"127.0.0.1:{config.health_ports['image']}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        local.stop()
        blocker.close()
