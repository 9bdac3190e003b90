"""Applies workers' results to job records: one durable pull consumer shared by all replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import fanout, state
from services.orchestrator.jobs import publish_task
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)

CONSUMER = "orchestrator"
# One at a time: nats-py's batch fetch, once a first message arrives, waits for the rest of
# the batch until its timeout, which would delay every result by up to that timeout.
BATCH = 1


def _terminal(result: tasks_pb2.Result) -> bool:
    return result.kind in (tasks_pb2.RESULT_KIND_SUCCEEDED, tasks_pb2.RESULT_KIND_FAILED)


def _applier(result: tasks_pb2.Result) -> Callable[[state_pb2.JobRecord], bool]:
    def apply(record: state_pb2.JobRecord) -> bool:
        return state.apply_result(record, result)

    return apply


# Called after a result changed a job (callbacks and events hang off this).
OnChange = Callable[[state_pb2.JobRecord, tasks_pb2.Result], Awaitable[None]]


async def consume_results(
    js: JetStreamContext, store: JobStore, stop: asyncio.Event, on_change: OnChange | None = None
) -> None:
    subscription = await js.pull_subscribe(
        "results.>",
        durable=CONSUMER,
        stream=streams.RESULTS_STREAM,
        config=ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=20,
            max_ack_pending=1024,
        ),
    )
    while not stop.is_set():
        try:
            messages = await subscription.fetch(BATCH, timeout=1.0)
        except TimeoutError:  # nats-py raises its own subclass, or the bare one
            continue
        except Exception as exc:
            log.warning("results fetch failed: %s", exc)
            await asyncio.sleep(1.0)
            continue
        for message in messages:
            try:
                result = tasks_pb2.Result.FromString(message.data)
            except Exception:
                log.error("undecodable result dropped")
                await message.term()
                continue
            try:
                record, changed = await store.mutate(result.tenant, result.job_id, _applier(result))
                # Follow-ups and events are published even when nothing changed: a redelivered
                # result may be one whose follow-ups were lost in a crash; fixed task and event
                # ids make the repeats no-ops.
                for service, spec in fanout.follow_ups(record, result):
                    await publish_task(js, service, spec)
                if _terminal(result):
                    await store.settle([result.task_id])
                if on_change is not None and (changed or _terminal(result)):
                    await on_change(record, result)
            except MeshError as error:
                if error.reason is Reason.NOT_FOUND:
                    await message.ack()  # the job expired; nothing to apply it to
                    continue
                await message.nak(delay=1.0)
                continue
            except Exception:
                log.exception("applying a result failed", extra={"job": result.job_id})
                await message.nak(delay=1.0)
                continue
            await message.ack()
