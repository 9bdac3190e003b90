"""Tasks JetStream gave up on: a task whose deliveries all timed out (a worker that crashed or
was killed every time) is never redelivered again and would leave its job waiting forever.
JetStream announces it with a max-deliveries advisory; this turns it into a FAILED result for
the task, then removes the message from the work queue.

Every replica hears the advisory; the result's `Nats-Msg-Id` (the one a worker's own final
result would carry) makes the repeats, and a worker's late success, count once.
"""

from __future__ import annotations

import contextlib
import json
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from mesh.bus import claims, streams
from mesh.bus import tasks as results
from mesh.bus.claims import Claims
from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import routing

log = logging.getLogger(__name__)

SUBJECT = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{streams.TASKS_STREAM}.*"
GAVE_UP = (
    "The conversion was interrupted every time it was tried (the worker stopped or ran out of "
    "time or memory); it will not be tried again."
)


async def watch_abandoned_tasks(nc: Client, js: JetStreamContext) -> Subscription:
    task_claims = await Claims.open(js)

    async def on_advisory(message: Msg) -> None:
        try:
            await fail_abandoned(js, task_claims, json.loads(message.data))
        except Exception:
            log.exception("handling a max-deliveries advisory failed")

    return await nc.subscribe(SUBJECT, cb=on_advisory)


async def fail_abandoned(
    js: JetStreamContext, task_claims: Claims, advisory: dict[str, object]
) -> None:
    sequence = int(str(advisory.get("stream_seq", 0)))
    service = str(advisory.get("consumer", ""))
    deliveries = int(str(advisory.get("deliveries", 0)))
    if not sequence or service not in routing.SERVICES:
        return
    try:
        stored = await js.get_msg(streams.TASKS_STREAM, sequence)
    except Exception:
        return  # already removed by another replica
    task = TaskSpec.from_proto(tasks_pb2.Task.FromString(stored.data or b""))
    log.warning("task abandoned after max deliveries", extra={"task": task.task_id})
    failure = results.failed(task, "orchestrator", MeshError(Reason.INTERNAL, GAVE_UP))
    # Claimed like a worker's own last word: a worker that was only paused may claim first,
    # and then its result is the one that stands.
    standing = await task_claims.claim(failure)
    final = failure if standing.open else standing.claimed
    if final is not None:
        await js.publish(
            streams.result_subject(service),
            final.SerializeToString(),
            headers={"Nats-Msg-Id": f"{task.task_id}.end"},
        )
    with contextlib.suppress(Exception):
        await js.delete_msg(streams.TASKS_STREAM, sequence)
    # What the interrupted deliveries stored is nobody's output now.
    keep = claims.outputs_of(final) if final is not None else set()
    await claims.discard_deliveries(
        js, task.output_blob, sequence, range(1, max(deliveries, 1) + 1), keep
    )
