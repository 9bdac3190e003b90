"""Tools for the chaos tests: a mesh of their own, a NATS tap that can kill a worker at an
exact protocol step, a ledger of everything written on the bus, polling with deadlines, and a
stream of mixed jobs sent by a client that retries as a careful one would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from PIL import Image

from launcher.mesh import LocalMesh, MeshConfig
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS, TERMINAL, auth

# Short leases so a lost task comes back within seconds, one task at a time per worker so
# "the task in flight" is unambiguous.
CHAOS_ENV = {
    "TASK_ACK_WAIT_SECONDS": "3",
    # Room for the task in flight to finish after SIGTERM on a busy machine (E11).
    "TASK_DRAIN_SECONDS": "120",
    "IMAGE_CONCURRENCY": "1",
    "MEDIA_CONCURRENCY": "1",
    "ARCHIVE_CONCURRENCY": "1",
    "MAX_ACTIVE_JOBS_PER_TENANT": "1000",
}

# The worker runtime's protocol steps, as the worker's client writes them to the server.
# nats-py acks with an empty payload; other clients send "+ACK". Progress (+WPI), -NAK and
# +TERM do not match.
ACK = re.compile(rb"PUB \$JS\.ACK\.TASKS\.\S+ +(?:0\r\n|4\r\n\+ACK)")
OUTPUT_CHUNK = re.compile(rb"PUB \$O\.blobs\.C\.")
# The object-store meta message that makes an output visible, published after all its chunks.
OUTPUT_COMMIT = re.compile(rb"PUB \$O\.blobs\.M\.")
RESULT = re.compile(rb"PUB results\.image ")


def start_mesh(data_dir: Path, **env: str) -> LocalMesh:
    keys = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
    local = LocalMesh(MeshConfig.ephemeral(data_dir, keys, **{**CHAOS_ENV, **env}))
    try:
        local.start()
    except Exception:
        local.stop()
        print_logs(local)
        raise
    return local


def print_logs(local: LocalMesh, tail: int = 4000) -> None:
    log_dir = local.config.log_dir
    if log_dir is None:
        return
    for log in sorted(log_dir.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")


def noisy_jpeg(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG that takes AV1 encoders a few seconds: coarse colour plus grain."""
    rng = random.Random(seed)
    coarse = Image.frombytes(
        "RGB", (width // 8, height // 8), rng.randbytes(width * height * 3 // 64)
    )
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    photo = Image.blend(coarse.resize((width, height), Image.Resampling.BICUBIC), grain, 0.15)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def eventually(
    probe: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.1
) -> Any:
    """Polls `probe` until it returns something truthy; fails naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(every)


async def process_exit(process: subprocess.Popen[bytes], within: float) -> int | None:
    """The exit code, or None if the process still runs after `within` s (never blocks the loop)."""
    try:
        return await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        return None


async def submit(
    http: httpx.AsyncClient,
    name: str,
    content: bytes,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        "/api/jobs",
        headers={**auth(), **(headers or {})},
        data=data,
        files=[("files", (name, content, "application/octet-stream"))],
    )


async def job_of(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/jobs/{job_id}", headers=auth())
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def terminal_job(http: httpx.AsyncClient, job_id: str, within: float) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        job = await job_of(http, job_id)
        return job if job["status"] in TERMINAL else None

    job: dict[str, Any] = await eventually(probe, within, f"job {job_id} terminal", every=0.2)
    return job


async def file_status(http: httpx.AsyncClient, job_id: str, index: int = 0) -> str:
    job = await job_of(http, job_id)
    return str(job["results"]["files"][index]["status"])


@dataclass
class Tap:
    """A TCP proxy between one worker and nats-server. Armed with a pattern, it calls
    `action` (SIGKILL the worker) the moment the worker tries to send the n-th match, and
    never forwards that match: the server does not see the step the worker died at."""

    upstream_port: int
    port: int = 0
    hits: int = 0
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    _pattern: re.Pattern[bytes] | None = None
    _occurrence: int = 1
    _action: Callable[[], None] | None = None
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def arm(
        self, pattern: re.Pattern[bytes], action: Callable[[], None], occurrence: int = 1
    ) -> None:
        self._pattern, self._action, self._occurrence = pattern, action, occurrence
        self.hits = 0
        self.fired = asyncio.Event()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_out.close()
            return
        upstream = asyncio.create_task(self._client_to_server(client_in, server_out, client_out))
        downstream = asyncio.create_task(_copy(server_in, client_out))
        self._pipes |= {upstream, downstream}
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in (upstream, downstream):
                pipe.cancel()
                self._pipes.discard(pipe)
            for writer in (client_out, server_out):
                writer.close()

    async def _client_to_server(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        tail = b""
        while data := await reader.read(65536):
            window = tail + data
            cut = self._match(window, len(tail))
            if cut is not None:
                if cut > len(tail):
                    writer.write(window[len(tail) : cut])
                    await writer.drain()
                if self._action is not None:
                    self._action()
                self._pattern = None
                self.fired.set()
                return
            writer.write(data)
            await writer.drain()
            tail = window[-512:]

    def _match(self, window: bytes, already_seen: int) -> int | None:
        """Where to cut `window` (the start of the fatal match), counting only new matches."""
        if self._pattern is None:
            return None
        for found in self._pattern.finditer(window):
            if found.end() <= already_seen:
                continue
            self.hits += 1
            if self.hits >= self._occurrence:
                return found.start()
        return None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@dataclass
class Ledger:
    """Everything the mesh writes that a test needs to count, heard on core NATS subjects:
    job record updates (KV puts), result messages (duplicates included, which JetStream would
    drop from the stream), output blob commits (object-store meta) and task acks."""

    nc: Client
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str) -> Ledger:
        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        ledger = cls(nc)
        for subject in ("$KV.jobs.>", "results.>", "$O.blobs.M.>", "$JS.ACK.TASKS.>"):
            await nc.subscribe(subject, cb=ledger._record)
        await nc.flush()
        return ledger

    async def _record(self, message: Msg) -> None:
        self.messages.append((message.subject, message.data))

    async def close(self) -> None:
        await self.nc.close()

    def records(self, job_id: str) -> list[state_pb2.JobRecord]:
        return [
            state_pb2.JobRecord.FromString(data)
            for subject, data in self.messages
            if subject.startswith("$KV.jobs.") and subject.endswith(f".{job_id}") and data
        ]

    def terminal_writes(self, job_id: str) -> int:
        """How many job record writes moved the job into (or rewrote) a terminal state."""
        return sum(
            1
            for record in self.records(job_id)
            if record.job.status
            in (
                jobs_pb2.JOB_STATUS_COMPLETED,
                jobs_pb2.JOB_STATUS_FAILED,
                jobs_pb2.JOB_STATUS_CANCELLED,
            )
        )

    def output_commits(self, job_id: str, index: int = 0) -> int:
        """Outputs stored for the file (meta records, not deletions), under any delivery's
        name (`out/<job>/<index>/d<seq>.<n>`, mesh.bus.claims)."""
        own = re.compile(rf"out/{re.escape(job_id)}/{index}/d\d+\.\d+")
        count = 0
        for subject, data in self.messages:
            if not subject.startswith("$O.blobs.M."):
                continue
            name = base64.urlsafe_b64decode(subject.removeprefix("$O.blobs.M.")).decode()
            if own.fullmatch(name) and not json.loads(data).get("deleted"):
                count += 1
        return count

    def results(self, task_id: str, kind: int) -> int:
        count = 0
        for subject, data in self.messages:
            if subject.startswith("results."):
                result = tasks_pb2.Result.FromString(data)
                count += result.task_id == task_id and result.kind == kind
        return count


@contextlib.asynccontextmanager
async def tapped_worker(local: LocalMesh, service: str = "image") -> AsyncIterator[Tap]:
    """Restarts `service` with its NATS connection through a Tap; restores a direct worker
    (and its normal start) when the test is done."""
    assert local.nats is not None
    tap = Tap(local.nats.port)
    await tap.start()
    await stop_service(local, service)
    local.start_service(service, {**local.environment(), "NATS_URL": tap.url})
    try:
        yield tap
    finally:
        await stop_service(local, service)
        await tap.close()
        local.start_service(service)


def spawn_worker(local: LocalMesh, log: Path, service: str = "image") -> subprocess.Popen[bytes]:
    """One more worker of `service`, beside the mesh's own (LocalMesh keeps one per name)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=local.environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def stop_service(local: LocalMesh, service: str, within: float = 30) -> None:
    process = local.processes[service]
    if process.poll() is None:
        process.terminate()
        if await process_exit(process, within) is None:
            process.kill()
            await process_exit(process, 5)


@dataclass(frozen=True)
class MixedJob:
    """One job of a chaos stream, with the outcome it must reach."""

    kind: str  # image | media | archive | corrupt
    name: str
    content: bytes
    data: dict[str, str]

    @property
    def expected(self) -> str:
        return "failed" if self.kind == "corrupt" else "completed"


PHOTOS = ("pillow/hopper.jpg", "pillow/hopper.png", "exif-orientation-examples/Landscape_3.jpg")
CORRUPT_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x13" * 200


def two_photo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for photo in PHOTOS[:2]:
            archive.write(CORPUS / photo, f"photos/{(CORPUS / photo).name}")
    return buffer.getvalue()


def mixed_job(rng: random.Random, number: int) -> MixedJob:
    """Images most often; media, an archive converted member by member (UNPACK, one task per
    member, PACK) and a damaged file that must fail alone now and then."""
    kind = rng.choices(("image", "media", "archive", "corrupt"), weights=(5, 2, 2, 1))[0]
    if kind == "image":
        photo = CORPUS / rng.choice(PHOTOS)
        fmt = rng.choice(("png", "webp", "jpg"))
        return MixedJob(kind, f"{number}-{photo.name}", photo.read_bytes(), {"format": fmt})
    if kind == "media":
        sound = CORPUS / "tinytag/16bit_pcm.wav"
        return MixedJob(kind, f"{number}.wav", sound.read_bytes(), {"format": "mp3"})
    if kind == "archive":
        return MixedJob(kind, f"{number}.zip", two_photo_zip(), {"format": "webp"})
    return MixedJob(kind, f"{number}-broken.jpg", CORRUPT_JPEG, {"format": "png"})


# What a client may retry with the same Idempotency-Key: the service said "later", or the
# connection broke before an answer.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


async def submit_until_answered(
    http: httpx.AsyncClient,
    job: MixedJob,
    key: str,
    within: float,
    extra: dict[str, str] | None = None,
) -> httpx.Response | None:
    """Posts `job` until it is accepted or refused for good, retrying what may succeed later
    with the same key; None when `within` seconds were not enough."""
    deadline = time.monotonic() + within
    delay = 0.2
    while time.monotonic() < deadline:
        try:
            response = await submit(
                http, job.name, job.content, {**job.data, **(extra or {})}, {"Idempotency-Key": key}
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code not in RETRY_STATUSES:
            return response
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    return None


async def settled_job(http: httpx.AsyncClient, job_id: str, within: float) -> dict[str, Any] | None:
    """The job once terminal, reading through outages; None if it is not after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            response = await http.get(f"/api/jobs/{job_id}", headers=auth())
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            job: dict[str, Any] = response.json()
            if job["status"] in TERMINAL:
                return job
        await asyncio.sleep(0.5)
    return None
