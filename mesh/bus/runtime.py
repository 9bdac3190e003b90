"""The worker runtime: a durable pull consumer per service and the life of one task.

For each task: skip it if the orchestrator marked it settled (its job was cancelled, or it is
a redelivery of a task already done), report STARTED, stream the source into a scratch
directory, run the service's handler, stream the output into the object store, publish
SUCCEEDED, and only then ack.
A `MeshError` that can never succeed publishes FAILED and terms the message; anything that may
succeed later is nak'ed with a delay, until the last delivery, which publishes FAILED.

Each task is a span of the trace its dispatch started (mesh.bus.consume), with one span per
stage (fetch source, convert with the sandbox's own steps inside, store output); its results
carry the task span's context back to the orchestrator. The stages are timed in
`convertmesh_task_stage_seconds` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry.trace import Span

from mesh import blobs, telemetry, tracing
from mesh.bus import streams
from mesh.bus import tasks as results
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
    """The task was settled by another delivery while this one converted: its lease expired
    (the worker was paused or slow past ack_wait) and JetStream handed the task on."""


class Worker:
    def __init__(
        self, nc: Client, js: JetStreamContext, settings: RuntimeSettings, handler: Handler
    ) -> None:
        self._nc = nc
        self._js = js
        self._settings = settings
        self._handler = handler
        self._stopping = asyncio.Event()
        self._settled: KeyValue | None = None

    def stop(self) -> None:
        """Stops fetching; tasks in flight finish (or are released after `drain_seconds`)."""
        self._stopping.set()

    async def run(self) -> None:
        s = self._settings
        self._settled = await self._js.key_value(streams.SETTLED_BUCKET)
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

    async def _process(self, message: Msg) -> None:
        s = self._settings
        try:
            task = TaskSpec.from_proto(tasks_pb2.Task.FromString(message.data))
        except Exception:
            log.error("undecodable task dropped", extra={"subject": message.subject})
            await message.term()
            return
        tracing.annotate(tracing.task_attributes(task))
        if not await self._wanted(task):
            await message.ack()
            telemetry.TASKS.labels(s.service, "skipped").inc()
            return
        deliveries = message.metadata.num_delivered or 1
        last_try = deliveries >= s.max_deliver
        if deliveries == 1:
            _observe_queue_wait(s.service, message)
        in_flight = telemetry.TASKS_IN_FLIGHT.labels(s.service)
        in_flight.inc()
        heartbeat = asyncio.create_task(self._keep_alive(message))
        scratch = Path(tempfile.mkdtemp(prefix=f"{s.service}-", dir=s.scratch_dir))
        started = time.monotonic()
        try:
            await self._publish(results.started(task, s.worker_name), f"{task.task_id}.start")
            outcome, size = await self._convert(task, scratch)
            await self._publish(
                results.succeeded(task, s.worker_name, outcome, size), f"{task.task_id}.end"
            )
            await message.ack()
            seconds = time.monotonic() - started
            telemetry.TASKS.labels(s.service, "succeeded").inc()
            telemetry.TASK_SECONDS.labels(s.service).observe(seconds)
            tracing.annotate({"convertmesh.outcome": "succeeded", "convertmesh.output_bytes": size})
            log.info("task done", extra={"task": task.task_id, "seconds": round(seconds, 3)})
        except _SupersededError:
            # Writing now would replace the output clients may be downloading, for a job that
            # is already final; the settled task is acked like a skipped redelivery.
            log.warning("task settled elsewhere meanwhile", extra={"task": task.task_id})
            telemetry.TASKS.labels(s.service, "skipped").inc()
            await message.ack()
        except MeshError as error:
            if error.reason.retryable and not last_try:
                await self._retry(message, task, error)
            else:
                await self._fail(message, task, error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task failed unexpectedly", extra={"task": task.task_id})
            if last_try:
                await self._fail(message, task, MeshError(Reason.INTERNAL))
            else:
                await self._retry(message, task, exc)
        finally:
            in_flight.dec()
            heartbeat.cancel()
            shutil.rmtree(scratch, ignore_errors=True)

    async def _convert(self, task: TaskSpec, scratch: Path) -> tuple[Outcome, int]:
        source = scratch / "source"
        output = scratch / "output"
        service = self._settings.service
        if task.source_blob:
            with _stage(service, "fetch", "fetch source") as current:
                await self._fetch(task.source_blob, source)
                size = source.stat().st_size
                tracing.set_attributes(current, {"convertmesh.input_bytes": size})
            telemetry.TASK_INPUT_BYTES.labels(service).inc(size)
        outputs = _Outputs(lambda: self._wanted(task), self._js, service)
        reporter = _ProgressReporter(self, task)
        context = TaskContext(
            task, source, output, scratch, reporter.report, self._fetch, outputs.store
        )
        try:
            with _stage(service, "convert", "convert"):
                outcome = await self._handler(context)
        finally:
            reporter.close()
        await outputs.confirm()
        if outcome.entries is not None:
            return outcome, 0
        if not output.exists():
            raise MeshError(Reason.INTERNAL, "The converter produced no output.")
        return outcome, await outputs.store(task.output_blob, output, outcome.format)

    async def _fetch(self, blob: str, path: Path) -> None:
        await blobs.read_to_file(self._js, streams.BLOBS_BUCKET, blob, path)

    async def _wanted(self, task: TaskSpec) -> bool:
        """False once the orchestrator marked the task settled."""
        assert self._settled is not None, "run() opens the bucket"
        try:
            await self._settled.get(streams.settled_key(task.task_id))
        except KeyNotFoundError:
            return True
        return False

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
        try:
            await self._publish(
                results.failed(task, self._settings.worker_name, error), f"{task.task_id}.end"
            )
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

    async def _publish(self, result: tasks_pb2.Result, msg_id: str | None) -> None:
        headers = tracing.inject({"Nats-Msg-Id": msg_id} if msg_id else {})
        await self._js.publish(
            streams.result_subject(self._settings.service),
            result.SerializeToString(),
            headers=headers or None,
        )


@contextlib.contextmanager
def _stage(service: str, stage: str, span_name: str) -> Iterator[Span]:
    """One stage of a task: a span, and its time in `convertmesh_task_stage_seconds`."""
    with tracing.span(span_name) as current, telemetry.STAGE_SECONDS.labels(service, stage).time():
        yield current


def _observe_queue_wait(service: str, message: Msg) -> None:
    """From the task's publication (JetStream's timestamp) to a worker taking it."""
    stamp = message.metadata.timestamp
    if stamp is not None:
        waited = max(0.0, time.time() - stamp.timestamp())
        telemetry.STAGE_SECONDS.labels(service, "queue_wait").observe(waited)


class _Outputs:
    """Stores a task's outputs once it is known that nobody settled the task meanwhile:
    writing then would replace outputs clients may be downloading, of a job already final."""

    def __init__(
        self, wanted: Callable[[], Awaitable[bool]], js: JetStreamContext, service: str
    ) -> None:
        self._wanted = wanted
        self._js = js
        self._service = service
        self._confirmed = False

    async def confirm(self) -> None:
        if not self._confirmed:
            if not await self._wanted():
                raise _SupersededError
            self._confirmed = True

    async def store(self, blob: str, path: Path, output_format: str = "unpacked") -> int:
        """Stores one output (an unpacked archive's members are stored by the handler)."""
        await self.confirm()
        with _stage(self._service, "store", "store output") as current:
            info = await blobs.write_file(self._js, streams.BLOBS_BUCKET, blob, path)
            tracing.set_attributes(current, {"convertmesh.output_bytes": info.size})
        telemetry.TASK_OUTPUT_BYTES.labels(self._service, output_format).inc(info.size)
        return info.size


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
