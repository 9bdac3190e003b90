"""Issue 13's chaos run: a 3-node NATS cluster on loopback with NATS_REPLICAS=3, two
orchestrators, two of each worker and the gateway, a stream of mixed jobs with callbacks to a
loopback receiver, and meanwhile SIGKILL of one NATS node, one orchestrator, one of each
worker and the gateway, each restarted as Kubernetes would (`LocalMesh.supervise`). It prints
a ledger and asserts that nothing is stuck, duplicated or left behind.

`make test` runs it for seeds 1 and 2 (about 45 s each), as does `make chaos`
(`make chaos SEEDS="3 4 5"` for others); the seed picks the jobs and the order and timing of
the kills.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import pytest

from launcher.mesh import LocalMesh, MeshConfig
from mesh import blobs, scratch
from mesh.bus import streams
from tests.e2e.chaos_support import (
    CHAOS_ENV,
    MixedJob,
    mixed_job,
    print_logs,
    settled_job,
    submit_until_answered,
)
from tests.e2e.conftest import KEYS
from tests.mesh.http_receiver import Receiver

SEEDS = [int(seed) for seed in os.environ.get("CHAOS_SEEDS", "1 2").split()]
JOBS = int(os.environ.get("CHAOS_JOBS", "40"))
REPLICAS = {"orchestrator": 2, "image": 2, "media": 2, "archive": 2}
# Typed failures a job may end with: the input's fault (the damaged file), never ours.
TYPED = {"CORRUPT_INPUT", "UNSUPPORTED_FORMAT", "UNSUPPORTED_PAIR"}
ORPHAN_GRACE = 60  # the sweeper's shortest grace period


@dataclass
class Ledger:
    submitted: int = 0
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    completed: int = 0
    typed_failed: int = 0
    untyped_failed: list[str] = field(default_factory=list)
    wrong_outcome: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicated_outputs: list[str] = field(default_factory=list)
    callbacks: int = 0
    duplicate_callbacks: int = 0
    orphan_blobs: int = 0
    scratch_left: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)

    def print(self) -> None:
        print(
            "chaos ledger: "
            + json.dumps(
                {
                    "submitted": self.submitted,
                    "accepted": self.accepted,
                    "refused": dict(self.refused),
                    "completed": self.completed,
                    "typed-failed": self.typed_failed,
                    "untyped-failed": self.untyped_failed,
                    "wrong outcome": self.wrong_outcome,
                    "stuck": len(self.stuck),
                    "duplicated outputs": len(self.duplicated_outputs),
                    "callbacks": self.callbacks,
                    "duplicate callbacks": self.duplicate_callbacks,
                    "orphan blobs": self.orphan_blobs,
                    "scratch left over": len(self.scratch_left),
                    "kills": self.kills,
                }
            )
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def start(data_dir: Path, receiver: Receiver) -> LocalMesh:
    keys = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
    port = receiver.url("/").split(":")[2].split("/")[0]
    config = MeshConfig.ephemeral(
        data_dir,
        keys,
        **{
            **CHAOS_ENV,
            "NATS_REPLICAS": "3",
            "REDISPATCH_SECONDS": "2",
            "ORPHAN_CHUNK_GRACE_SECONDS": str(ORPHAN_GRACE),
            # The grace must exceed an upload stream's idle timeout by 30 s.
            "UPLOAD_STREAM_IDLE_SECONDS": str(ORPHAN_GRACE - 30),
            "OUTBOUND_ALLOW_HOSTS": f"127.0.0.1:{port}",
            "CALLBACK_RETRY_DELAYS": "1,2,4,8",
        },
    )
    config.replicas = dict(REPLICAS)
    config.nats_servers = 3
    local = LocalMesh(config)
    try:
        local.start(ready_timeout=300)
    except Exception:
        print_logs(local)
        local.stop()
        raise
    return local


class Supervisor:
    """Restarts what dies, as Kubernetes would, on a thread of its own."""

    def __init__(self, local: LocalMesh) -> None:
        self._local = local
        self._stop = threading.Event()
        self.said: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._local.supervise(say=self.said.append)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def kill(local: LocalMesh, victim: str) -> None:
    if victim.startswith("nats-"):
        (server,) = [s for s in local.nats_servers() if f"nats-{s.name}" == victim]
        server.kill()
    else:
        local.processes[victim].kill()


async def live_outputs(local: LocalMesh) -> list[str]:
    nc = await nats.connect(servers=local.nats_url.split(","))
    try:
        metas = await blobs.live(nc.jetstream(), streams.BLOBS_BUCKET)
    finally:
        await nc.close()
    return [meta.name or "" for meta in metas]


async def orphans(local: LocalMesh) -> int:
    nc = await nats.connect(servers=local.nats_url.split(","))
    try:
        return len(await blobs.orphan_groups(nc.jetstream(), streams.BLOBS_BUCKET))
    finally:
        await nc.close()


def terminal_callbacks(receiver: Receiver) -> set[str]:
    """The jobs a terminal callback (completed or failed) was delivered for."""
    told = set()
    for seen in receiver.at("/hook"):
        body = json.loads(seen.body)
        if body["type"] in ("conversion.completed", "conversion.failed"):
            told.add(body["data"]["jobId"])
    return told


def scratch_left(root: Path) -> list[str]:
    """Task folders still present, and folders of dead workers nobody removed."""
    left = [str(path) for path in scratch.abandoned(root)]
    for folder in root.iterdir():
        if folder.is_dir():
            left += [str(task) for task in folder.glob("task-*")]
    return left


DELIVERY = re.compile(r"(out/.+?)/d(\d+\.\d+)(/[^/]+)?(?:/.*)?")


def duplicated(names: list[str]) -> list[str]:
    """Tasks whose outputs are kept from more than one delivery: a task's output is
    `<base>/d<seq>.<n>`, an UNPACK's members `<base>/d<seq>.<n>/e/<k>` (the PACK of the same
    file writes `<base>/d<seq>.<n>` too: another task); the winner of a task's claim removes
    what its other deliveries stored."""
    deliveries: dict[tuple[str, str], set[str]] = {}
    for name in names:
        if matched := DELIVERY.fullmatch(name):
            task = (matched[1], matched[3] or "")
            deliveries.setdefault(task, set()).add(matched[2])
    return sorted(f"{base}{kind}" for (base, kind), seen in deliveries.items() if len(seen) > 1)


@pytest.mark.parametrize("seed", SEEDS)
async def test_chaos_on_a_cluster_loses_nothing(
    tmp_path: Path, receiver: Receiver, seed: int
) -> None:
    rng = random.Random(seed)
    local = start(tmp_path, receiver)
    supervisor = Supervisor(local)
    ledger = Ledger()
    nodes = [f"nats-{server.name}" for server in local.nats_servers()]
    victims = [
        rng.choice(nodes),
        rng.choice(local.instances("orchestrator")),
        rng.choice(local.instances("image")),
        rng.choice(local.instances("media")),
        rng.choice(local.instances("archive")),
        "gateway",
    ]
    rng.shuffle(victims)
    answers: list[tuple[MixedJob, httpx.Response | None]] = []
    try:
        async with httpx.AsyncClient(base_url=local.http_url, timeout=60) as http:
            callback = {"callbackUrl": receiver.url("/hook")}

            async def send(number: int) -> None:
                job = mixed_job(rng, number)
                key = f"chaos-{seed}-{number}"
                answer = await submit_until_answered(http, job, key, within=240, extra=callback)
                answers.append((job, answer))

            async def chaos() -> None:
                for victim in victims:
                    await asyncio.sleep(rng.uniform(1.0, 3.0))
                    ledger.kills.append(victim)
                    kill(local, victim)

            sending = []
            monkey = asyncio.create_task(chaos())
            for number in range(JOBS):
                sending.append(asyncio.create_task(send(number)))
                await asyncio.sleep(0.5)
            await asyncio.gather(*sending)
            await monkey
            ledger.submitted = JOBS
            for job, answer in answers:
                if answer is None or answer.status_code != 200:
                    ledger.refused[answer.status_code if answer else 0] += 1
                    continue
                ledger.accepted += 1
                job_id = answer.json()["jobId"]
                settled = await settled_job(http, job_id, within=300)
                if settled is None:
                    ledger.stuck.append(job_id)
                    continue
                if settled["status"] == "completed":
                    ledger.completed += 1
                else:
                    codes = {item.get("errorCode") for item in settled["results"]["files"]}
                    if codes <= TYPED:
                        ledger.typed_failed += 1
                    else:
                        ledger.untyped_failed.append(f"{job.name}: {codes}")
                if settled["status"] != job.expected:
                    ledger.wrong_outcome.append(f"{job.name}: {settled['status']}")
        supervisor.stop()
        # A callback may come late: a result whose event could not be queued while a NATS
        # node was down is applied again when JetStream redelivers it (up to ack_wait later).
        accepted_jobs = {answer.json()["jobId"] for _, answer in answers if answer is not None}
        deadline = time.monotonic() + 180
        missing = accepted_jobs - terminal_callbacks(receiver)
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(1)
            missing = accepted_jobs - terminal_callbacks(receiver)
        names = await live_outputs(local)
        ledger.duplicated_outputs = duplicated(names)
        hooks = [json.loads(seen.body)["id"] for seen in receiver.at("/hook")]
        ledger.callbacks = len(hooks)
        ledger.duplicate_callbacks = len(hooks) - len(set(hooks))
        # Aborted uploads remove their chunks at once; a writer killed mid-upload leaves them
        # to the sweeper, which takes its grace period and half of it again at most.
        deadline = time.monotonic() + ORPHAN_GRACE * 1.5 + 60
        ledger.orphan_blobs = await orphans(local)
        while ledger.orphan_blobs and time.monotonic() < deadline:
            await asyncio.sleep(1)
            ledger.orphan_blobs = await orphans(local)
        ledger.scratch_left = scratch_left(tmp_path / "scratch")
        ledger.print()
        print("\n".join(supervisor.said))
        assert ledger.stuck == [], ledger.stuck
        assert ledger.duplicated_outputs == [], (ledger.duplicated_outputs, names)
        assert ledger.orphan_blobs == 0
        assert ledger.scratch_left == [], ledger.scratch_left
        assert ledger.accepted == ledger.completed + ledger.typed_failed, ledger.untyped_failed
        assert ledger.wrong_outcome == []
        assert not ledger.refused, "a careful client got every job accepted"
        assert missing == set(), "these jobs' terminal callbacks never came"
        assert sorted(ledger.kills) == sorted(victims)
        assert all(f"restarting {victim}" in " ".join(supervisor.said) for victim in victims)
    except BaseException:
        print_logs(local)
        raise
    finally:
        supervisor.stop()
        local.stop()
