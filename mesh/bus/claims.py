"""A task's last word, claimed once: per-delivery outputs and a compare-and-set on the result.

JetStream may hand one task to two workers at once: the first was paused or slow past
`ack_wait`, the second got a redelivery. Both convert. So that neither can replace what the
other wrote, each delivery writes its outputs under a name of its own (`delivery_blob`), and
before it publishes its final result (SUCCEEDED or FAILED) it claims the task: it creates the
task's key in the `settled` bucket with the result as value, which succeeds for one delivery
only. The loser deletes its outputs and acks; the winner publishes, acks, and deletes what
other deliveries of the same message left (a killed delivery's outputs, for one).

The key's value says where the task stands:
- absent: nobody has finished it;
- a serialized `Result`: claimed by that result, which may not be published yet (its worker
  died in between): a later delivery publishes it again (same `Nats-Msg-Id`) instead of
  converting;
- empty: settled by the orchestrator (the result was applied, or the job cancelled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mesh import blobs
from mesh.bus import streams
from mesh.tasks.v1 import tasks_pb2


@dataclass(frozen=True)
class Standing:
    """Where a task stands: `settled` by the orchestrator, or `claimed` by a final result."""

    settled: bool = False
    claimed: tasks_pb2.Result | None = None

    @property
    def open(self) -> bool:
        return not self.settled and self.claimed is None


def delivery_blob(base: str, stream_sequence: int, delivery: int) -> str:
    """The output name of one delivery of the task message at `stream_sequence`."""
    return f"{base}/d{stream_sequence}.{delivery}"


def entry_blob(output: str, number: int) -> str:
    """Where an UNPACK stores member `number`, under its own output name."""
    return f"{output}/e/{number}"


class Claims:
    def __init__(self, settled: KeyValue) -> None:
        self._settled = settled

    @classmethod
    async def open(cls, js: JetStreamContext) -> Claims:
        return cls(await js.key_value(streams.SETTLED_BUCKET))

    async def standing(self, task_id: str) -> Standing:
        try:
            entry = await self._settled.get(streams.settled_key(task_id))
        except KeyNotFoundError:
            return Standing()
        if not entry.value:
            return Standing(settled=True)
        return Standing(claimed=tasks_pb2.Result.FromString(entry.value))

    async def claim(self, result: tasks_pb2.Result) -> Standing:
        """Claims the task for `result`; an open Standing means it won, anything else is
        the standing that was there first."""
        try:
            await self._settled.create(
                streams.settled_key(result.task_id), result.SerializeToString()
            )
        except KeyWrongLastSequenceError:
            standing = await self.standing(result.task_id)
            # Claimed and then settled between the two reads: either way, not ours.
            return standing if not standing.open else Standing(settled=True)
        return Standing()


def outputs_of(result: tasks_pb2.Result) -> set[str]:
    """Every blob a final result points at."""
    names = {entry.blob for entry in result.entries if entry.blob}
    if result.output_blob:
        names.add(result.output_blob)
    return names


async def discard_deliveries(
    js: JetStreamContext,
    base: str,
    stream_sequence: int,
    deliveries: Iterable[int],
    keep: set[str],
) -> None:
    """Deletes what these deliveries of one task message stored (their output and the
    entries of an UNPACK), except the blobs in `keep`. Best effort: the blobs expire anyway."""
    for delivery in deliveries:
        name = delivery_blob(base, stream_sequence, delivery)
        if name in keep:
            continue
        with contextlib.suppress(Exception):
            await blobs.delete(js, streams.BLOBS_BUCKET, name)
            number = 0
            # An UNPACK stores its entries one after the other: the first gap ends them.
            while await blobs.exists(js, streams.BLOBS_BUCKET, entry := entry_blob(name, number)):
                if entry not in keep:
                    await blobs.delete(js, streams.BLOBS_BUCKET, entry)
                number += 1
