"""How blob chunks move: cut to a fixed size for writing, pulled back in order for reading.

Reads use an ephemeral pull consumer with no acks and keep two pull requests of half a batch in
flight, so the broker never waits for the client to ask and at most one batch is buffered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from mesh.errors import MeshError, Reason

log = logging.getLogger(__name__)

# The JetStream API prefix of a default account; a JetStream domain would change it.
JS_API = "$JS.API"
PULL_EXPIRES_SECONDS = 10.0
CONSUMER_IDLE_SECONDS = 30.0
# nats-py drops messages past a subscription's pending limit (64 MiB by default); a batch of
# 128 chunks of 128 KiB stays well below it.
MAX_BATCH = 128
# Pull requests nobody answered (503) before the read gives up: about 4 s of waiting in all.
MAX_UNANSWERED = 20


def unavailable(error: BaseException) -> MeshError:
    # The cause is logged, never put in the error: its detail is shown to clients.
    log.warning("blob store unavailable: %r", error)
    return MeshError(Reason.UNAVAILABLE, "The blob store is unavailable; retry later.")


async def rechunk(
    chunks: AsyncIterable[bytes], size: int, flush_seconds: float | None = None
) -> AsyncIterator[bytes]:
    """Yields `size`-byte pieces (the last one shorter) with one copy at most per byte.

    With `flush_seconds`, what is pending is also yielded, shorter, when a piece arrives that
    long after the last yield: a slow upload then stores a chunk at least every
    `flush_seconds` plus the gap between its pieces, so the sweeper can tell it from an
    abandoned one by the age of its newest chunk (`sweep_orphan_chunks`).
    """
    pending = bytearray()
    last = time.monotonic()
    async for piece in chunks:
        if not pending and len(piece) == size and isinstance(piece, bytes):
            last = time.monotonic()
            yield piece
            continue
        view = memoryview(piece)
        start = 0
        if pending:
            start = min(size - len(pending), len(view))
            pending += view[:start]
            if len(pending) < size:
                if flush_seconds is not None and time.monotonic() - last > flush_seconds:
                    last = time.monotonic()
                    yield bytes(pending)
                    pending.clear()
                continue
            last = time.monotonic()
            yield bytes(pending)
            pending.clear()
        while len(view) - start >= size:
            last = time.monotonic()
            yield bytes(view[start : start + size])
            start += size
        pending += view[start:]
    if pending:
        yield bytes(pending)


def _status(msg: Msg) -> str | None:
    if msg.headers is None or msg.data:
        return None
    status: str | None = msg.headers.get(api.Header.STATUS)
    return status


async def pull(
    js: JetStreamContext, stream: str, subject: str, total: int, batch: int
) -> AsyncGenerator[bytes, None]:
    """Yields the `total` messages on `subject`, in stream order; deletes its consumer on exit."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL,
        filter_subject=subject,
        # A backstop: a reader killed before its `finally` leaves nothing behind for long.
        inactive_threshold=CONSUMER_IDLE_SECONDS,
        mem_storage=True,
        num_replicas=1,
    )
    # nats-py has no public accessor for the connection under a JetStream context.
    nc = js._nc
    inbox = nc.new_inbox()
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def deliver(msg: Msg) -> None:
        received.put_nowait(msg)

    try:
        consumer = (await js.add_consumer(stream, config)).name
    except nats.errors.Error as error:
        raise unavailable(error) from error
    sub = await nc.subscribe(inbox, cb=deliver)
    next_subject = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
    half = max(1, min(batch, MAX_BATCH) // 2)
    requested = got = unanswered = 0

    async def request() -> None:
        nonlocal requested
        amount = min(half, total - requested)
        ask: dict[str, Any] = {"batch": amount, "expires": int(PULL_EXPIRES_SECONDS * 1e9)}
        await nc.publish(next_subject, json.dumps(ask).encode(), reply=inbox)
        requested += amount

    try:
        while requested < min(total, 2 * half):
            await request()
        while got < total:
            async with asyncio.timeout(PULL_EXPIRES_SECONDS + 5):
                msg = await received.get()
            status = _status(msg)
            if status == "100":
                continue
            if status == "503" and unanswered < MAX_UNANSWERED:
                # No responders: on a cluster the new consumer's pull endpoint can be a moment
                # behind its creation. The request was not taken: ask again (asking for more
                # than is left is harmless, the consumer has only `total` messages).
                unanswered += 1
                requested = max(got, requested - half)
                await asyncio.sleep(0.02 * unanswered)
                await request()
                continue
            if status is not None:
                # Only a purge under a reader (the blob was replaced or deleted) gets here.
                raise MeshError(
                    Reason.UNAVAILABLE, "The blob changed while it was read.", status=status
                )
            got += 1
            if got % half == 0 and requested < total:
                await request()
            yield msg.data
    except (TimeoutError, nats.errors.Error) as error:
        raise unavailable(error) from error
    finally:
        await _release(js, sub, stream, consumer)


async def _release(js: JetStreamContext, sub: Subscription, stream: str, consumer: str) -> None:
    try:
        await sub.unsubscribe()
        await js.delete_consumer(stream, consumer)
    except nats.errors.Error:
        # The broker is unreachable: the consumer's idle threshold removes it later.
        pass


async def stream_subjects(js: JetStreamContext, stream: str, subjects: str) -> dict[str, int]:
    """Message count per subject of `stream` matching `subjects`, every page of the answer
    (nats-server hands out a limited number of subjects per request)."""
    nc = js._nc
    found: dict[str, int] = {}
    while True:
        ask = {"subjects_filter": subjects, "offset": len(found)}
        try:
            answer = await nc.request(
                f"{JS_API}.STREAM.INFO.{stream}", json.dumps(ask).encode(), timeout=10
            )
        except (TimeoutError, nats.errors.Error) as error:
            raise unavailable(error) from error
        info = json.loads(answer.data)
        if "error" in info:
            raise unavailable(RuntimeError(info["error"].get("description", "")))
        page = info.get("state", {}).get("subjects") or {}
        found.update(page)
        if not page or len(found) >= int(info.get("total", 0)):
            return found
