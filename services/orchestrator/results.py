"""Applies workers' results to job records: one durable pull consumer shared by all replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from mesh import tracing
from mesh.bus import streams
from mesh.bus.consume import consume
from mesh.errors import MeshError, Reason
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import fanout, state, statuses
from services.orchestrator.jobs import publish_task
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)

CONSUMER = "orchestrator"

# Called after a result changed a job (callbacks and events hang off this).
OnChange = Callable[[state_pb2.JobRecord, tasks_pb2.Result], Awaitable[None]]


def _applier(result: tasks_pb2.Result) -> Callable[[state_pb2.JobRecord], bool]:
    def apply(record: state_pb2.JobRecord) -> bool:
        return state.apply_result(record, result)

    return apply


async def consume_results(
    js: JetStreamContext, store: JobStore, stop: asyncio.Event, on_change: OnChange | None = None
) -> None:
    async def handle(message: Msg) -> None:
        try:
            result = tasks_pb2.Result.FromString(message.data)
        except Exception:
            log.error("undecodable result dropped")
            await message.term()
            return
        tracing.annotate(_attributes(result))
        try:
            await _apply(js, store, result, on_change)
        except MeshError as error:
            if error.reason is Reason.NOT_FOUND:
                await message.ack()  # the job expired; nothing to apply it to
            else:
                await message.nak(delay=1.0)
            return
        await message.ack()

    await consume(
        js,
        subject="results.>",
        stream=streams.RESULTS_STREAM,
        config=ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=20,
            max_ack_pending=1024,
        ),
        handle=handle,
        stop=stop,
        operation="apply result",
    )


def _attributes(result: tasks_pb2.Result) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "convertmesh.job_id": result.job_id,
        "convertmesh.tenant": result.tenant,
        "convertmesh.task_id": result.task_id,
        "convertmesh.file_index": result.file_index,
        "convertmesh.result": tasks_pb2.ResultKind.Name(result.kind).removeprefix("RESULT_KIND_"),
    }
    if result.error_code:
        attributes["convertmesh.reason"] = result.error_code
    return attributes


async def _apply(
    js: JetStreamContext, store: JobStore, result: tasks_pb2.Result, on_change: OnChange | None
) -> None:
    record, changed = await store.mutate(result.tenant, result.job_id, _applier(result))
    tracing.annotate({"convertmesh.changed": changed})
    # Follow-ups, the settled mark and events are published even when nothing changed: a
    # redelivered result may be one whose follow-ups were lost in a crash; fixed task and
    # event ids make the repeats no-ops.
    final = result.kind in statuses.FINAL_RESULTS
    for service, spec in fanout.follow_ups(record, result):
        await publish_task(js, service, spec)
    if final:
        await store.settle([result.task_id])
    if on_change is not None and (changed or final):
        await on_change(record, result)
