"""The one pull-consume loop, against a real nats-server: bounded concurrency, a failing
handler's message comes back, idle polls are quiet, stopping releases what is in flight, and
redeliveries and JetStream's view of the consumer are metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from prometheus_client import REGISTRY, generate_latest

from launcher.nats import NatsServer
from mesh.bus.consume import Handle, consume

STREAM = "CONSUMETEST"
SUBJECT = "consumetest.work"


@pytest.fixture
async def js(server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(server.url)
    context = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await context.delete_stream(STREAM)
    await context.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    yield context
    await nc.close()


def config(durable: str = "c", ack_wait: float = 60) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=5
    )


async def eventually(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def start(
    js: JetStreamContext, handle: Handle, stop: asyncio.Event, durable: str = "c", **options: float
) -> asyncio.Task[None]:
    return asyncio.create_task(
        consume(
            js,
            subject=SUBJECT,
            stream=STREAM,
            config=config(durable),
            handle=handle,
            stop=stop,
            **options,  # type: ignore[arg-type]
        )
    )


async def publish(js: JetStreamContext, count: int) -> None:
    for number in range(count):
        await js.publish(SUBJECT, str(number).encode())


async def test_at_most_concurrency_messages_are_handled_at_once(js: JetStreamContext) -> None:
    gate = asyncio.Event()
    active: list[bytes] = []
    done: list[bytes] = []
    peak = 0

    async def handle(message: Msg) -> None:
        nonlocal peak
        active.append(message.data)
        peak = max(peak, len(active))
        await gate.wait()
        active.remove(message.data)
        done.append(message.data)
        await message.ack()

    stop = asyncio.Event()
    running = start(js, handle, stop, concurrency=2)
    await publish(js, 5)
    await eventually(lambda: len(active) == 2)
    info = await js.consumer_info(STREAM, "c")
    assert info.num_ack_pending == 2  # the loop fetches nothing while every slot is busy
    gate.set()
    await eventually(lambda: len(done) == 5)
    stop.set()
    await running
    assert peak == 2
    assert sorted(done) == [str(n).encode() for n in range(5)]


async def test_a_handler_that_raises_gets_its_message_back(js: JetStreamContext) -> None:
    seen: list[int] = []

    async def handle(message: Msg) -> None:
        seen.append(message.metadata.num_delivered or 0)
        if len(seen) == 1:
            raise RuntimeError("NATS went away mid-message")
        await message.ack()

    stop = asyncio.Event()
    running = start(js, handle, stop, nak_delay=0.1)
    await publish(js, 1)
    await eventually(lambda: len(seen) == 2)
    stop.set()
    await running
    assert seen == [1, 2]


async def test_idle_polls_are_not_reported_as_fetch_failures(
    server: NatsServer, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[bytes] = []
    pulls: list[Msg] = []

    async def handle(message: Msg) -> None:
        handled.append(message.data)
        await message.ack()

    async def pulled(message: Msg) -> None:
        pulls.append(message)

    # Every fetch is a pull request on this subject: several must expire before work arrives.
    watcher = await nats.connect(server.url)
    await watcher.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.c", cb=pulled)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="mesh.bus.consume"):
        running = start(js, handle, stop)
        await eventually(lambda: len(pulls) >= 3)
        await watcher.close()
        await publish(js, 1)
        await eventually(lambda: handled == [b"0"])
        stop.set()
        await running
    assert [r.getMessage() for r in caplog.records] == []


async def test_stopping_releases_unfinished_messages_to_the_next_consumer(
    js: JetStreamContext,
) -> None:
    started = asyncio.Event()
    deliveries: list[int] = []

    async def stuck(message: Msg) -> None:
        started.set()
        await asyncio.Event().wait()

    async def finish(message: Msg) -> None:
        deliveries.append(message.metadata.num_delivered or 0)
        await message.ack()

    stop = asyncio.Event()
    running = start(js, stuck, stop, drain_seconds=0.2)
    await publish(js, 1)
    await asyncio.wait_for(started.wait(), 30)
    stop.set()
    await running
    # ack_wait is 60 s: only the nak on cancel brings the message back this soon.
    again = asyncio.Event()
    next_one = start(js, finish, again)
    await eventually(lambda: deliveries == [2])
    again.set()
    await next_one


async def test_a_consumer_started_before_its_stream_exists_waits_for_it(
    js: JetStreamContext,
) -> None:
    # As when a worker starts while the broker is restarting: subscribing fails at first, and
    # the loop asks again instead of ending the service.
    await js.delete_stream(STREAM)
    seen: list[bytes] = []

    async def handle(message: Msg) -> None:
        seen.append(message.data)
        await message.ack()

    stop = asyncio.Event()
    running = start(js, handle, stop, durable="late")
    await asyncio.sleep(0)  # let it try once
    assert not running.done()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    await publish(js, 1)
    await eventually(lambda: seen == [b"0"], 60)
    stop.set()
    await running


async def test_a_consumer_stopped_while_waiting_for_its_stream_ends(js: JetStreamContext) -> None:
    await js.delete_stream(STREAM)
    stop = asyncio.Event()
    running = start(js, lambda message: message.ack(), stop, durable="never")
    stop.set()
    await asyncio.wait_for(running, 60)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_redeliveries_are_counted_and_pending_is_read_from_jetstream_at_a_scrape(
    js: JetStreamContext,
) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def handle(message: Msg) -> None:
        seen.append(message.metadata.num_delivered or 0)
        if len(seen) == 1:
            raise RuntimeError("comes back")
        await gate.wait()
        await message.ack()

    labels = {"stream": STREAM, "consumer": "scraped"}
    redelivered = _sample("convertmesh_redeliveries_total", **labels)
    stop = asyncio.Event()
    running = start(js, handle, stop, nak_delay=0.1, durable="scraped")
    await publish(js, 1)
    await eventually(lambda: len(seen) == 2)
    assert seen == [1, 2]  # the one message, handed out again; its handler holds the slot
    await publish(js, 3)  # none fetched while the only slot is busy
    # A scrape runs on the metrics server's thread; the loop answers it meanwhile.
    exposition = await asyncio.to_thread(generate_latest)
    lines = exposition.decode().splitlines()
    pending = next(
        line for line in lines if line.startswith("convertmesh_consumer_pending_messages{")
    )
    assert 'consumer="scraped"' in pending and pending.endswith(" 3.0")
    ack_pending = (
        f'convertmesh_consumer_ack_pending_messages{{consumer="scraped",stream="{STREAM}"}}'
    )
    assert f"{ack_pending} 1.0" in lines
    assert _sample("convertmesh_redeliveries_total", **labels) == redelivered + 1
    gate.set()
    await eventually(lambda: len(seen) == 5)
    stop.set()
    await running
    # A stopped consumer is no longer asked about.
    after = (await asyncio.to_thread(generate_latest)).decode().splitlines()
    assert not [line for line in after if "_pending_messages{" in line and "scraped" in line]
