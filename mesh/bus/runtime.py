"""The worker runtime: a durable pull consumer per service and the life of one task.

For each task: skip it if the orchestrator marked it settled (its job was cancelled, or it is
a redelivery of a task already done), publish it again if another delivery claimed it but died
before publishing (see `claims`), report STARTED, stream the source into a task folder of the
process's scratch space, run the service's handler, stream the output into the object store
under this delivery's own name, claim the task, publish SUCCEEDED, and only then ack.
A `MeshError` that can never succeed publishes FAILED and terms the message; anything that may
succeed later is nak'ed with a delay, until the last delivery, which publishes FAILED. A full
disk is one of those (RESOURCE_EXHAUSTED, tried again); a task whose files outgrow its scratch
quota is stopped and fails.

Each task is a span of the trace its dispatch started (mesh.bus.consume), with one span per
stage (fetch source, convert with the sandbox's own steps inside, store output); its results
carry the task span's context back to the orchestrator. The stages are timed in
`convertmesh_task_stage_seconds` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import Span

from mesh import blobs, scratch, telemetry, tracing
from mesh.bus import claims, streams
from mesh.bus import tasks as results
from mesh.bus.claims import Claims
from mesh.bus.consume import consume
from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.outcome import Outcome
from mesh.tasks.v1 import tasks_pb2

log = logging.getLogger(__name__)

# Blob name -> file on disk, and back (returning the stored size).
Fetch = Callable[[str, Path], Awaitable[None]]
Store = Callable[[str, Path], Awaitable[int]]


@dataclass(frozen=True)
class RuntimeSettings:
    service: str
    worker_name: str
    concurrency: int = 1
    ack_wait_seconds: float = 30.0
    max_deliver: int = 4
    retry_delay_seconds: float = 2.0
    scratch_dir: Path | None = None
    progress_interval_seconds: float = 0.5
    drain_seconds: float = 20.0
    # What one task's files may take in its scratch folder (source included); None: no cap.
    task_scratch_bytes: int | None = None
    # A task announces STARTED only once it has run this long (0: at once), so a quick one
    # goes from queued straight to its end.
    started_grace_seconds: float = 0.5


@dataclass
class TaskContext:
    """What a handler gets: the task, its source on disk (when it has one), and where to write
    the output. A handler that needs other blobs, or stores several outputs itself (and says
    so with `Outcome.entries`), uses `fetch` and `store`."""

    task: TaskSpec
    source: Path
    output: Path
    scratch: Path
    report_progress: Callable[[float], None]
    fetch: Fetch
    store: Store


Handler = Callable[[TaskContext], Awaitable[Outcome]]


class _SupersededError(Exception):
    """The task was settled or claimed by another delivery while this one converted: its
    lease expired (the worker was paused or slow past ack_wait) and JetStream handed it on."""

    def __init__(self, standing: claims.Standing) -> None:
        super().__init__()
        self.standing = standing


@dataclass(frozen=True)
class _Delivery:
    """One delivery of a task message: its outputs are named after it."""

    sequence: int
    number: int
    last: bool
    began: float = dataclasses.field(default_factory=time.monotonic)


class Worker:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        settings: RuntimeSettings,
        handler: Handler,
        space: scratch.ScratchSpace | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._settings = settings
        self._handler = handler
        self._stopping = asyncio.Event()
        self._claims: Claims | None = None
        self._space = space

    def stop(self) -> None:
        """Stops fetching; tasks in flight finish (or are released after `drain_seconds`)."""
        self._stopping.set()

    async def run(self) -> None:
        s = self._settings
        self._claims = await Claims.open(self._js)
        own_space = self._space is None
        if self._space is None:
            self._space = scratch.ScratchSpace.claim(s.scratch_dir, s.service)
        try:
            await self._consume()
        finally:
            if own_space:
                self._space.release()

    async def _consume(self) -> None:
        s = self._settings
        await consume(
            self._js,
            subject=streams.task_subject(s.service),
            stream=streams.TASKS_STREAM,
            config=ConsumerConfig(
                durable_name=s.service,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=s.ack_wait_seconds,
                max_deliver=s.max_deliver,
                max_ack_pending=max(4, s.concurrency * 4),
                filter_subject=streams.task_subject(s.service),
            ),
            handle=self._process,
            stop=self._stopping,
            concurrency=s.concurrency,
            drain_seconds=s.drain_seconds,
            nak_delay=s.retry_delay_seconds,
            operation=f"task {s.service}",
        )

    @property
    def _bus_claims(self) -> Claims:
        assert self._claims is not None, "run() opens the bucket"
        return self._claims

    async def _process(self, message: Msg) -> None:
        s = self._settings
        try:
            task = TaskSpec.from_proto(tasks_pb2.Task.FromString(message.data))
        except Exception:
            log.error("undecodable task dropped", extra={"subject": message.subject})
            await message.term()
            return
        tracing.annotate(tracing.task_attributes(task))
        standing = await self._bus_claims.standing(task.task_id)
        if not standing.open:
            await self._settle(message, task, standing)
            telemetry.TASKS.labels(s.service, "skipped").inc()
            return
        metadata = message.metadata
        delivery = _Delivery(
            sequence=metadata.sequence.stream if metadata.sequence else 0,
            number=metadata.num_delivered or 1,
            last=(metadata.num_delivered or 1) >= s.max_deliver,
        )
        if delivery.number == 1:
            _observe_queue_wait(s.service, message)
        own = dataclasses.replace(
            task,
            output_blob=claims.delivery_blob(task.output_blob, delivery.sequence, delivery.number),
        )
        assert self._space is not None, "run() claims the scratch space"
        folder = self._space.task_folder(s.service)
        outputs = _Outputs(self._bus_claims, task.task_id, self._js, s.service)
        in_flight = telemetry.TASKS_IN_FLIGHT.labels(s.service)
        in_flight.inc()
        heartbeat = asyncio.create_task(self._keep_alive(message))
        try:
            announcing = await self._announce_start(task)
            try:
                async with scratch.quota(folder, s.task_scratch_bytes):
                    outcome, size = await self._convert(own, folder, outputs)
            finally:
                await _withdraw(announcing)
            final = results.succeeded(own, s.worker_name, outcome, size)
            if await self._finish(message, own, delivery, final, outputs):
                seconds = time.monotonic() - delivery.began
                telemetry.TASKS.labels(s.service, "succeeded").inc()
                telemetry.TASK_SECONDS.labels(s.service).observe(seconds)
                tracing.annotate(
                    {"convertmesh.outcome": "succeeded", "convertmesh.output_bytes": size}
                )
                log.info("task done", extra={"task": task.task_id, "seconds": round(seconds, 3)})
        except _SupersededError as superseded:
            # The other delivery's word stands; this one's outputs go.
            log.warning("task settled elsewhere meanwhile", extra={"task": task.task_id})
            telemetry.TASKS.labels(s.service, "skipped").inc()
            await outputs.discard()
            await self._settle(message, task, superseded.standing)
        except asyncio.CancelledError:
            await outputs.discard()
            raise
        except Exception as exc:
            await outputs.discard()
            error = _as_task_error(exc, folder)
            if error.retryable and not delivery.last:
                await self._retry(message, task, error)
            else:
                await self._fail(message, own, error)
        finally:
            in_flight.dec()
            heartbeat.cancel()
            shutil.rmtree(folder, ignore_errors=True)

    async def _convert(
        self, task: TaskSpec, folder: Path, outputs: _Outputs
    ) -> tuple[Outcome, int]:
        source = folder / "source"
        output = folder / "output"
        service = self._settings.service
        if task.source_blob:
            with _stage(service, "fetch", "fetch source") as current:
                await self._fetch_source(task.source_blob, source)
                size = source.stat().st_size
                tracing.set_attributes(current, {"convertmesh.input_bytes": size})
            telemetry.TASK_INPUT_BYTES.labels(service).inc(size)
        reporter = _ProgressReporter(self, task)
        context = TaskContext(
            task, source, output, folder, reporter.report, self._fetch, outputs.store
        )
        try:
            with _converting(service):
                outcome = await self._handler(context)
        finally:
            reporter.close()
        await outputs.confirm()
        if outcome.entries is not None:
            return outcome, 0
        if not output.exists():
            raise MeshError(Reason.INTERNAL, "The converter produced no output.")
        return outcome, await outputs.store(task.output_blob, output, outcome.format)

    async def _fetch_source(self, blob: str, path: Path) -> None:
        """Fetches the source once it is known to fit: in the task's quota (else the task
        fails) and on the disk (else it is tried again later)."""
        known = await blobs.info(self._js, streams.BLOBS_BUCKET, blob)
        size = known.size
        quota = self._settings.task_scratch_bytes
        if quota and size > quota:
            raise scratch.quota_error(quota)
        if scratch.free_bytes(path.parent) < size + scratch.DISK_RESERVE_BYTES:
            raise scratch.disk_full_error()
        await blobs.read_to_file(self._js, streams.BLOBS_BUCKET, blob, path, known=known)

    async def _fetch(self, blob: str, path: Path) -> None:
        await blobs.read_to_file(self._js, streams.BLOBS_BUCKET, blob, path)

    async def _finish(
        self,
        message: Msg,
        task: TaskSpec,
        delivery: _Delivery,
        result: tasks_pb2.Result,
        outputs: _Outputs,
    ) -> bool:
        """Claims the task for `result`, publishes it and acks; False when another delivery
        (or the orchestrator) had the last word first, whose outputs then stand."""
        # From here the claim may stand even when its reply is lost (a NATS node dies under
        # it): what this delivery stored may be the result a later delivery publishes again,
        # so an error from here on leaves it. Only a claim known to be lost deletes it.
        outputs.pledge()
        standing = await self._bus_claims.claim(result)
        if not standing.open:
            log.warning("task claimed elsewhere meanwhile", extra={"task": task.task_id})
            telemetry.TASKS.labels(self._settings.service, "skipped").inc()
            await outputs.discard(lost=True)
            await self._settle(message, task, standing)
            return False
        await self._publish(result, f"{task.task_id}.end")
        await message.ack()
        # Other deliveries of this message exist only after a redelivery, or when this one
        # outlived its lease (a pause): then what they stored goes, unless it is the winner's.
        lease_lost = time.monotonic() - delivery.began > self._settings.ack_wait_seconds
        others = [
            number
            for number in range(1, self._settings.max_deliver + 1)
            if number < delivery.number or (number > delivery.number and lease_lost)
        ]
        base = _base_output(task, delivery)
        await claims.discard_deliveries(
            self._js, base, delivery.sequence, others, claims.outputs_of(result)
        )
        return True

    async def _settle(self, message: Msg, task: TaskSpec, standing: claims.Standing) -> None:
        """Acks a task another delivery finished: its claimed result is published again first,
        in case that delivery died before publishing it (JetStream drops the repeat)."""
        if standing.claimed is not None:
            await self._publish(standing.claimed, f"{task.task_id}.end")
        await message.ack()

    async def _retry(self, message: Msg, task: TaskSpec, error: Exception) -> None:
        deliveries = message.metadata.num_delivered or 1
        delay = self._settings.retry_delay_seconds * (2 ** (deliveries - 1))
        telemetry.TASKS.labels(self._settings.service, "retried").inc()
        tracing.annotate({"convertmesh.outcome": "retried"})
        log.warning(
            "task will be retried",
            extra={"task": task.task_id, "error": str(error), "delay": delay},
        )
        with contextlib.suppress(Exception):
            await message.nak(delay=delay)

    async def _fail(self, message: Msg, task: TaskSpec, error: MeshError) -> None:
        log.info("task failed", extra={"task": task.task_id, "reason": error.reason.value})
        telemetry.TASKS.labels(self._settings.service, "failed").inc()
        tracing.annotate({"convertmesh.outcome": "failed"})
        tracing.fail(error.reason.value, error.message)
        failure = results.failed(task, self._settings.worker_name, error)
        try:
            standing = await self._bus_claims.claim(failure)
            if standing.open:
                await self._publish(failure, f"{task.task_id}.end")
            elif standing.claimed is not None:
                await self._publish(standing.claimed, f"{task.task_id}.end")
        except Exception:
            # The failure is not durable yet: let JetStream redeliver instead of losing it.
            log.exception("could not publish failure", extra={"task": task.task_id})
            with contextlib.suppress(Exception):
                await message.nak(delay=self._settings.retry_delay_seconds)
            return
        await message.term()

    async def _keep_alive(self, message: Msg) -> None:
        interval = self._settings.ack_wait_seconds / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await message.in_progress()

    async def _announce_start(self, task: TaskSpec) -> asyncio.Task[None] | None:
        """Publishes STARTED once the task has run `started_grace_seconds` (at once with 0).
        A task done sooner goes from queued to its end without it: one result message, one
        job revision and one event fewer."""
        started = results.started(task, self._settings.worker_name)
        msg_id = f"{task.task_id}.start"
        grace = self._settings.started_grace_seconds
        if grace <= 0:
            await self._publish(started, msg_id)
            return None

        async def later() -> None:
            await asyncio.sleep(grace)
            with contextlib.suppress(Exception):
                await self._publish(started, msg_id)

        return asyncio.create_task(later())

    async def _publish(self, result: tasks_pb2.Result, msg_id: str | None) -> None:
        headers = tracing.inject({"Nats-Msg-Id": msg_id} if msg_id else {})
        await self._js.publish(
            streams.result_subject(self._settings.service),
            result.SerializeToString(),
            headers=headers or None,
        )


async def _withdraw(announcing: asyncio.Task[None] | None) -> None:
    """Drops a STARTED not sent yet; one on its way is in the stream before what follows."""
    if announcing is None:
        return
    announcing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await announcing


def _base_output(task: TaskSpec, delivery: _Delivery) -> str:
    """The task's output name before `delivery_blob` made it this delivery's own."""
    suffix = claims.delivery_blob("", delivery.sequence, delivery.number)
    return task.output_blob.removesuffix(suffix)


def _as_task_error(exc: Exception, folder: Path) -> MeshError:
    """The typed error a failed task reports: a full disk whatever the converter said about
    it (decoders report a failed write as damaged input), else the error itself."""
    if scratch.is_disk_error(exc) or scratch.disk_full(folder):
        log.warning("scratch disk full", extra={"folder": str(folder)})
        return scratch.disk_full_error()
    if isinstance(exc, MeshError):
        return exc
    log.error("task failed unexpectedly", exc_info=exc)
    return MeshError(Reason.INTERNAL)


@contextlib.contextmanager
def _stage(service: str, stage: str, span_name: str) -> Iterator[Span]:
    """One stage of a task: a span, and its time in `convertmesh_task_stage_seconds`."""
    with tracing.span(span_name) as current, telemetry.STAGE_SECONDS.labels(service, stage).time():
        yield current


@contextlib.contextmanager
def _converting(service: str) -> Iterator[None]:
    """The convert stage of a task: its time in `convertmesh_task_stage_seconds`, and no span of
    its own: the handler's `sandbox` span is the stage in the trace (a span around it added
    nothing an operator reads but its cost)."""
    with telemetry.STAGE_SECONDS.labels(service, "convert").time():
        yield


def _observe_queue_wait(service: str, message: Msg) -> None:
    """From the task's publication (JetStream's timestamp) to a worker taking it."""
    stamp = message.metadata.timestamp
    if stamp is not None:
        waited = max(0.0, time.time() - stamp.timestamp())
        telemetry.STAGE_SECONDS.labels(service, "queue_wait").observe(waited)


class _Outputs:
    """Stores a delivery's outputs once it is known that nobody settled or claimed the task
    meanwhile, and remembers them, so that a delivery that loses deletes what it wrote."""

    def __init__(
        self, task_claims: Claims, task_id: str, js: JetStreamContext, service: str
    ) -> None:
        self._claims = task_claims
        self._task_id = task_id
        self._js = js
        self._service = service
        self._confirmed = False
        self._pledged = False
        self._stored: list[str] = []

    async def confirm(self) -> None:
        if not self._confirmed:
            standing = await self._claims.standing(self._task_id)
            if not standing.open:
                raise _SupersededError(standing)
            self._confirmed = True

    async def store(self, blob: str, path: Path, output_format: str = "unpacked") -> int:
        """Stores one output (an unpacked archive's members are stored by the handler)."""
        await self.confirm()
        self._stored.append(blob)
        with _stage(self._service, "store", "store output") as current:
            info = await blobs.write_file(self._js, streams.BLOBS_BUCKET, blob, path)
            tracing.set_attributes(current, {"convertmesh.output_bytes": info.size})
        telemetry.TASK_OUTPUT_BYTES.labels(self._service, output_format).inc(info.size)
        return info.size

    def pledge(self) -> None:
        """The outputs are about to be named in a claim: an error no longer deletes them."""
        self._pledged = True

    async def discard(self, *, lost: bool = False) -> None:
        """Deletes what this delivery stored, unless it was pledged to a claim that may have
        taken effect (`lost`: the claim is known to be another's). Best effort: a blob left
        behind expires with the bucket's retention, or goes with the winner's clean-up of the
        deliveries before it."""
        if self._pledged and not lost:
            return
        for blob in self._stored:
            with contextlib.suppress(Exception):
                await blobs.delete(self._js, streams.BLOBS_BUCKET, blob)
        self._stored.clear()


class _ProgressReporter:
    """Turns the handler's frequent progress calls into a few result messages a second."""

    def __init__(self, worker: Worker, task: TaskSpec) -> None:
        self._worker = worker
        self._task = task
        self._last_sent = 0.0
        self._last_percent = -1
        self._pending: asyncio.Task[None] | None = None

    def report(self, fraction: float) -> None:
        percent = max(0, min(99, int(fraction * 100)))
        now = time.monotonic()
        interval = self._worker._settings.progress_interval_seconds
        if percent <= self._last_percent or now - self._last_sent < interval:
            return
        if self._pending is not None and not self._pending.done():
            return
        self._last_sent, self._last_percent = now, percent
        message = results.progressed(self._task, self._worker._settings.worker_name, percent)
        self._pending = asyncio.create_task(self._send(message))

    async def _send(self, message: tasks_pb2.Result) -> None:
        with contextlib.suppress(Exception):
            await self._worker._publish(message, None)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
