"""The one pull-consume loop of the mesh: the worker runtime's tasks, the orchestrator's results
and its callback events all go through it.

A durable pull consumer is fetched one message at a time while a slot is free, and up to
`concurrency` messages are handled at once. On `stop` it fetches no more and gives what is in
flight `drain_seconds` to finish; anything still running then is cancelled and nak'ed, so
another consumer gets it at once. A handler that raises gets its message nak'ed with a delay:
the loop itself never stops on one message.

Each message is handled inside a CONSUMER span that continues the trace its headers carry
(mesh.tracing), so a task joins its dispatch's trace, a result its task's, a callback event its
result's. Redeliveries are counted, and JetStream's view of the consumer (pending, ack pending)
is read at every metrics scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from opentelemetry.trace import SpanKind

from mesh import telemetry, tracing

log = logging.getLogger(__name__)

Handle = Callable[[Msg], Awaitable[None]]
# A failed fetch is connection trouble: wait this long for the reconnect before the next.
FETCH_RETRY_SECONDS = 1.0
IDLE_POLL_SECONDS = 1.0


async def consume(
    js: JetStreamContext,
    *,
    subject: str,
    stream: str,
    config: ConsumerConfig,
    handle: Handle,
    stop: asyncio.Event,
    concurrency: int = 1,
    drain_seconds: float = 5.0,
    nak_delay: float = 1.0,
    operation: str = "",
) -> None:
    """Consumes with the durable consumer `config` until `stop` is set, then drains.
    `operation` names each message's span (default: `consume <consumer>`)."""
    subscription = await _subscribe(js, subject, stream, config, stop)
    if subscription is None:
        return
    consumer = _Consumer(stream, config.durable_name or "", handle, nak_delay, operation)
    telemetry.CONSUMERS.watch(js, stream, consumer.name)
    try:
        await _consume(subscription, consumer, stop, concurrency, drain_seconds)
    finally:
        telemetry.CONSUMERS.forget(stream, consumer.name)


class _Consumer:
    def __init__(self, stream: str, name: str, handle: Handle, nak_delay: float, operation: str):
        self.stream = stream
        self.name = name
        self.handle = handle
        self.nak_delay = nak_delay
        self.operation = operation or f"consume {name}"
        self.redeliveries = telemetry.REDELIVERIES.labels(stream, name)


async def _consume(
    subscription: JetStreamContext.PullSubscription,
    consumer: _Consumer,
    stop: asyncio.Event,
    concurrency: int,
    drain_seconds: float,
) -> None:
    in_flight: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        if len(in_flight) >= concurrency:
            await asyncio.wait(
                in_flight, timeout=IDLE_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            continue
        try:
            # One at a time: a batch, once its first message arrives, waits out the whole
            # timeout for the rest, which would delay every message by up to that much.
            messages = await subscription.fetch(1, timeout=IDLE_POLL_SECONDS)
        except TimeoutError:  # nothing came: nats-py raises its own subclass, or the bare one
            continue
        except Exception as exc:
            log.warning("fetch failed: %s", exc, extra={"stream": consumer.stream})
            await asyncio.sleep(FETCH_RETRY_SECONDS)
            continue
        for message in messages:
            running = asyncio.create_task(_handle_one(consumer, message))
            in_flight.add(running)
            running.add_done_callback(in_flight.discard)
    if in_flight:
        _, pending = await asyncio.wait(in_flight, timeout=drain_seconds)
        for running in pending:
            running.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _subscribe(
    js: JetStreamContext, subject: str, stream: str, config: ConsumerConfig, stop: asyncio.Event
) -> JetStreamContext.PullSubscription | None:
    """The pull subscription, asked for again while NATS cannot answer (a broker restarting as
    the service starts): the service waits for it rather than exits. None if stopped first."""
    while not stop.is_set():
        try:
            return await js.pull_subscribe(
                subject, durable=config.durable_name, stream=stream, config=config
            )
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("subscribing failed, retrying: %s", exc, extra={"stream": stream})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FETCH_RETRY_SECONDS)
    return None


async def _handle_one(consumer: _Consumer, message: Msg) -> None:
    deliveries = message.metadata.num_delivered or 1
    if deliveries > 1:
        consumer.redeliveries.inc()
    try:
        with tracing.span(
            consumer.operation,
            kind=SpanKind.CONSUMER,
            parent=tracing.extract(message.headers),
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": message.subject,
                "messaging.consumer.group.name": consumer.name,
                "messaging.message.delivery_count": deliveries,
            },
        ):
            await consumer.handle(message)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await message.nak()
        raise
    except Exception:
        # NATS trouble around the message (reading state, acking): it comes back after the
        # delay, and this consumer goes on with the others.
        log.exception("message handling failed", extra={"subject": message.subject})
        with contextlib.suppress(Exception):
            await message.nak(delay=consumer.nak_delay)
