"""Small synchronous conversions over NATS request/reply, beside the durable task path.

The orchestrator sends an `InlineTask` (the task as JetStream would carry it, plus the source's
bytes) to `inline.<service>`, where every worker of the service listens in one queue group; the
worker runs it through the same handler, in the same pooled sandbox with the same limits, as a
task from the stream, and answers on the request's reply subject. Nothing is stored: no blob,
no KV record, no stream message.

The replies, told apart by the `Inline` header:

- `beat`: the worker has the request and is still at it (every `BEAT_SECONDS`), so that a
  requester that hears nothing for a while knows the worker died;
- `chunk`: a piece of the output (pieces fit in the server's max_payload);
- `done`: the task's `Result` (succeeded or failed, as the durable path would publish it),
  then the output's last piece when it fits (`Inline-Result-Bytes` says where the result
  ends); the output is the chunks before it and that piece;
- `durable`: not done here (the output is too large to carry, the handler needs the object
  store, or the failure may go away on a retry): the requester takes the durable path.

No responder at all comes back as NATS's own no-responders status (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind

from mesh import scratch, telemetry, tracing
from mesh.bus import tasks as results
from mesh.bus.runtime import Handler, RuntimeSettings, TaskContext, _as_task_error, _converting
from mesh.bus.tasks import TaskSpec
from mesh.tasks.v1 import tasks_pb2

log = logging.getLogger(__name__)

KIND_HEADER = "Inline"
# In `done`: the length of the result, which the output's last piece follows.
RESULT_HEADER = "Inline-Result-Bytes"
BEAT_SECONDS = 1.0
# The most output one inline answer carries; a larger one goes the durable way (the gateway
# receives at most 8 MiB per gRPC message).
MAX_OUTPUT_BYTES = 6 * 1024 * 1024
# Room for headers and the protocol line in a message that carries a chunk.
_HEADROOM = 8 * 1024
_NO_RESPONDERS = "503"
# An output up to this size is read back on the event loop (a fraction of a millisecond);
# a larger one in a thread.
_SMALL_IO_BYTES = 1024 * 1024


def subject(service: str) -> str:
    return f"inline.{service}"


class Kind(enum.Enum):
    BEAT = "beat"
    CHUNK = "chunk"
    DONE = "done"
    DURABLE = "durable"


class _DurableError(Exception):
    """The task cannot be answered inline; the requester takes the durable path."""


async def _no_fetch(blob: str, path: Path) -> None:
    raise _DurableError("this task needs the object store")


async def _no_store(blob: str, path: Path) -> int:
    raise _DurableError("this task needs the object store")


class InlineServer:
    """A worker's side: serves `inline.<service>` until `stop`."""

    def __init__(
        self,
        nc: Client,
        settings: RuntimeSettings,
        handler: Handler,
        space: scratch.ScratchSpace,
    ) -> None:
        self._nc = nc
        self._settings = settings
        self._handler = handler
        self._space = space
        self._gate = asyncio.Semaphore(settings.concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        service = self._settings.service
        self._subscription = await self._nc.subscribe(
            subject(service), queue=service, cb=self._accept
        )

    async def stop(self) -> None:
        """No new request is taken; the ones in flight get `drain_seconds` to finish (a
        request cut off is one its requester sees go silent and hands to the durable path)."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=self._settings.drain_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

    async def _accept(self, message: Msg) -> None:
        # Taken at once (nats-py runs one callback at a time per subscription): the beats
        # start now, while the request may still wait for a free slot.
        task = asyncio.create_task(self._serve(message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _serve(self, message: Msg) -> None:
        if not message.reply:
            return
        beats = asyncio.create_task(self._beat(message.reply))
        try:
            with tracing.span(
                f"task {self._settings.service}",
                kind=SpanKind.CONSUMER,
                parent=tracing.extract(message.headers),
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": message.subject,
                    "messaging.consumer.group.name": self._settings.service,
                    "convertmesh.inline": True,
                },
            ):
                await self._run(message, beats)
        except Exception:
            log.exception("inline request failed", extra={"subject": message.subject})
            with contextlib.suppress(Exception):
                await self._reply(message.reply, Kind.DURABLE)
        finally:
            beats.cancel()

    async def _beat(self, reply: str) -> None:
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            with contextlib.suppress(Exception):
                await self._reply(reply, Kind.BEAT)

    async def _reply(self, reply: str, kind: Kind, payload: bytes = b"") -> None:
        await self._nc.publish(reply, payload, headers={KIND_HEADER: kind.value})

    async def _run(self, message: Msg, beats: asyncio.Task[None]) -> None:
        s = self._settings
        inline = tasks_pb2.InlineTask.FromString(message.data)
        task = TaskSpec.from_proto(inline.task)
        tracing.annotate(tracing.task_attributes(task))
        until = time.monotonic() + inline.seconds
        reply = message.reply
        async with self._gate:
            if time.monotonic() >= until:
                log.info(
                    "inline request dropped: its requester gave up", extra={"task": task.task_id}
                )
                return
            began = time.monotonic()
            folder = self._space.task_folder(s.service)
            in_flight = telemetry.TASKS_IN_FLIGHT.labels(s.service)
            in_flight.inc()
            try:
                outcome = await self._convert(task, inline.source, folder)
                if outcome is None:
                    await self._reply(reply, Kind.DURABLE)
                    return
                answer, data = outcome
                beats.cancel()
                await self._answer(reply, answer, data)
                # The answer waits in the client's buffer for its flusher: let it go out
                # before the clean-up below (counting, logging, removing the scratch files).
                await asyncio.sleep(0)
                if answer.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
                    seconds = time.monotonic() - began
                    telemetry.TASKS.labels(s.service, "succeeded").inc()
                    telemetry.TASK_SECONDS.labels(s.service).observe(seconds)
                    log.info(
                        "task done",
                        extra={"task": task.task_id, "seconds": round(seconds, 3), "inline": True},
                    )
            finally:
                in_flight.dec()
                shutil.rmtree(folder, ignore_errors=True)

    async def _answer(self, reply: str, answer: tasks_pb2.Result, data: bytes) -> None:
        """The output in pieces that fit a message, the last one in `done` behind the
        result (RESULT_HEADER says where it ends) when both fit."""
        step = max(self._nc.max_payload - _HEADROOM, 64 * 1024)
        pieces = [data[start : start + step] for start in range(0, len(data), step)] or [b""]
        encoded = answer.SerializeToString()
        if len(encoded) + len(pieces[-1]) > step:
            pieces.append(b"")
        for piece in pieces[:-1]:
            await self._reply(reply, Kind.CHUNK, piece)
        await self._nc.publish(
            reply,
            encoded + pieces[-1],
            headers={KIND_HEADER: Kind.DONE.value, RESULT_HEADER: str(len(encoded))},
        )

    async def _convert(
        self, task: TaskSpec, source_bytes: bytes, folder: Path
    ) -> tuple[tasks_pb2.Result, bytes] | None:
        """(result, output) to answer, or None to send the requester the durable way."""
        s = self._settings
        source = folder / "source"
        output = folder / "output"
        # On the loop, not in a thread: the source fits one NATS message, and a hand-off to
        # a thread (and back) cost the worker more CPU than the write itself.
        source.write_bytes(source_bytes)
        telemetry.TASK_INPUT_BYTES.labels(s.service).inc(len(source_bytes))
        context = TaskContext(task, source, output, folder, _ignore_progress, _no_fetch, _no_store)
        try:
            async with scratch.quota(folder, s.task_scratch_bytes):
                with _converting(s.service):
                    outcome = await self._handler(context)
            if outcome.entries is not None:
                raise _DurableError("the handler stored its outputs itself")
            size = output.stat().st_size if output.exists() else -1
            if size < 0 or size > MAX_OUTPUT_BYTES:
                raise _DurableError("no output, or too large to carry")
            if size <= _SMALL_IO_BYTES:
                data = output.read_bytes()
            else:
                data = await asyncio.to_thread(output.read_bytes)
        except _DurableError as why:
            log.info("inline task sent the durable way: %s", why, extra={"task": task.task_id})
            telemetry.TASKS.labels(s.service, "retried").inc()
            return None
        except Exception as exc:
            error = _as_task_error(exc, folder)
            if error.retryable:
                # The durable path retries it as it would any task (and fails it typed).
                telemetry.TASKS.labels(s.service, "retried").inc()
                return None
            log.info("task failed", extra={"task": task.task_id, "reason": error.reason.value})
            telemetry.TASKS.labels(s.service, "failed").inc()
            tracing.annotate({"convertmesh.outcome": "failed"})
            tracing.fail(error.reason.value, error.message)
            return results.failed(task, s.worker_name, error), b""
        telemetry.TASK_OUTPUT_BYTES.labels(s.service, outcome.format).inc(len(data))
        tracing.annotate(
            {"convertmesh.outcome": "succeeded", "convertmesh.output_bytes": len(data)}
        )
        return results.succeeded(task, s.worker_name, outcome, len(data)), data


def _ignore_progress(_: float) -> None:
    """An inline task reports no progress: its requester waits for the end anyway."""


@dataclass(frozen=True)
class Reply:
    """What a worker answered: a result and the output, or why the durable path must go."""

    result: tasks_pb2.Result | None = None
    output: bytes = b""
    # no_responders, silent (the worker went quiet: died), timeout, durable (it said so)
    why: str = ""


class InlineRequester:
    """The orchestrator's side: one wildcard inbox for every request in flight."""

    def __init__(self, nc: Client, silence_seconds: float) -> None:
        self._nc = nc
        self._silence = silence_seconds
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Queue[Msg]] = {}
        self._subscription: Subscription | None = None

    @property
    def max_payload(self) -> int:
        return self._nc.max_payload - _HEADROOM

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(f"{self._prefix}.*", cb=self._route)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _route(self, message: Msg) -> None:
        waiting = self._waiting.get(message.subject.rpartition(".")[2])
        if waiting is not None:
            waiting.put_nowait(message)

    async def request(
        self, service: str, task: tasks_pb2.InlineTask, seconds: float, headers: dict[str, str]
    ) -> Reply:
        """Sends the task and waits up to `seconds` for its answer."""
        token = uuid.uuid4().hex
        replies: asyncio.Queue[Msg] = asyncio.Queue()
        self._waiting[token] = replies
        until = time.monotonic() + seconds
        chunks: list[bytes] = []
        try:
            await self._nc.publish(
                subject(service),
                task.SerializeToString(),
                reply=f"{self._prefix}.{token}",
                headers=headers or None,
            )
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    return Reply(why="timeout")
                try:
                    message = await asyncio.wait_for(replies.get(), min(self._silence, left))
                except TimeoutError:
                    return Reply(why="timeout" if time.monotonic() >= until else "silent")
                heard = message.headers or {}
                if heard.get("Status") == _NO_RESPONDERS:
                    return Reply(why="no_responders")
                kind = heard.get(KIND_HEADER)
                if kind == Kind.CHUNK.value:
                    chunks.append(message.data)
                elif kind == Kind.DONE.value:
                    data = message.data
                    end = int(heard.get(RESULT_HEADER) or len(data))
                    chunks.append(data[end:])
                    return Reply(tasks_pb2.Result.FromString(data[:end]), b"".join(chunks))
                elif kind == Kind.DURABLE.value:
                    return Reply(why="durable")
        finally:
            del self._waiting[token]
