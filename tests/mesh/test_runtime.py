"""The worker runtime's contract with JetStream, with a real nats-server and test handlers:
permanent failures are reported once and termed, transient ones retried up to max_deliver,
long tasks kept alive with in_progress, tasks the orchestrator marked settled skipped."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from launcher.nats import NatsServer
from mesh import blobs, telemetry
from mesh.bus import streams
from mesh.bus.claims import Claims
from mesh.bus.runtime import RuntimeSettings, TaskContext, Worker
from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from mesh.outcome import Outcome
from mesh.tasks.v1 import tasks_pb2

SERVICE = "image"


@pytest.fixture
async def bus(server: NatsServer) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    for stream in (streams.TASKS_STREAM, streams.RESULTS_STREAM):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await streams.ensure(js, streams.Retention())
    yield nc, js
    await nc.close()


async def dispatch(js: JetStreamContext, name: str, settled: bool = False) -> TaskSpec:
    await blobs.write_stream(js, streams.BLOBS_BUCKET, f"src/{name}", _one(b"payload"))
    if settled:
        kv = await js.key_value(streams.SETTLED_BUCKET)
        await kv.put(streams.settled_key(f"{name}.0"), b"")
    task = TaskSpec(
        task_id=f"{name}.0",
        job_id=name,
        tenant="t",
        file_index=0,
        source_blob=f"src/{name}",
        source_format="png",
        source_family="image",
        filename="a.png",
        options=ConversionOptions(format="jpg"),
        output_blob=f"out/{name}/0",
        compress=False,
    )
    await js.publish(
        streams.task_subject(SERVICE),
        task.to_proto().SerializeToString(),
        headers={"Nats-Msg-Id": task.task_id},
    )
    return task


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def run_worker(
    nc: Client,
    js: JetStreamContext,
    handler: Callable[[TaskContext], Awaitable[Outcome]],
    within: float = 60.0,
    **settings: Any,
) -> None:
    """Runs a worker until every queued task is acked or termed (the work queue is empty),
    then stops it; fails after `within` seconds."""
    worker = Worker(
        nc,
        js,
        RuntimeSettings(
            service=SERVICE,
            worker_name="test",
            ack_wait_seconds=settings.get("ack_wait", 30.0),
            max_deliver=int(settings.get("max_deliver", 3)),
            retry_delay_seconds=0.1,
            drain_seconds=2,
            task_scratch_bytes=int(settings.get("scratch_bytes", 0)) or None,
            scratch_dir=settings.get("scratch_dir"),
            # STARTED at once unless a test says otherwise: the results these tests expect.
            started_grace_seconds=settings.get("started_grace", 0.0),
        ),
        handler,
    )
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + within
    while (await js.stream_info(streams.TASKS_STREAM)).state.messages:
        assert time.monotonic() < deadline, "the worker left tasks in the queue"
        await asyncio.sleep(0.05)
    worker.stop()
    await running
    await js.delete_consumer(streams.TASKS_STREAM, SERVICE)


async def results(js: JetStreamContext) -> list[tasks_pb2.Result]:
    subscription = await js.pull_subscribe(
        "results.>",
        stream=streams.RESULTS_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    collected: list[tasks_pb2.Result] = []
    try:
        while True:
            for message in await subscription.fetch(100, timeout=0.5):
                collected.append(tasks_pb2.Result.FromString(message.data))
                await message.ack()
    except TimeoutError:
        return collected
    finally:
        await subscription.unsubscribe()


def kinds(found: list[tasks_pb2.Result]) -> list[str]:
    return [tasks_pb2.ResultKind.Name(r.kind).removeprefix("RESULT_KIND_") for r in found]


async def test_success_publishes_the_result_then_acks(bus: tuple[Client, JetStreamContext]) -> None:
    nc, js = bus
    calls = 0

    async def convert(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        assert context.source.read_bytes() == b"payload"
        context.output.write_bytes(b"converted")
        return Outcome("jpg", "image/jpeg", width=1, height=1)

    await dispatch(js, "ok")
    await run_worker(nc, js, convert)
    found = await results(js)
    assert kinds(found) == ["STARTED", "SUCCEEDED"]
    assert found[-1].output_size == len(b"converted")
    assert (await js.stream_info(streams.TASKS_STREAM)).state.messages == 0
    assert calls == 1
    # Under this delivery's own name, which the result names.
    assert found[-1].output_blob.startswith("out/ok/0/d")
    info = await blobs.info(js, streams.BLOBS_BUCKET, found[-1].output_blob)
    assert info.size == len(b"converted")


async def _convert_ok(context: TaskContext) -> Outcome:
    context.output.write_bytes(b"converted")
    return Outcome("jpg", "image/jpeg", width=1, height=1)


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
async def test_a_task_done_within_the_grace_publishes_no_started(
    bus: tuple[Client, JetStreamContext], fails: bool
) -> None:
    nc, js = bus

    async def refuse(context: TaskContext) -> Outcome:
        raise MeshError(Reason.CORRUPT_INPUT, "Not an image.")

    await dispatch(js, f"quick-{fails}".lower())  # a name per case: claims outlive a test
    await run_worker(nc, js, refuse if fails else _convert_ok, started_grace=60.0)
    assert kinds(await results(js)) == (["FAILED"] if fails else ["SUCCEEDED"])


async def test_a_task_running_past_the_grace_publishes_started_first(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus

    async def slow(context: TaskContext) -> Outcome:
        # Works until its STARTED is in the results stream (no fixed wait).
        deadline = time.monotonic() + 60
        while not (await js.stream_info(streams.RESULTS_STREAM)).state.messages:
            assert time.monotonic() < deadline, "no STARTED while the task ran"
            await asyncio.sleep(0.02)
        return await _convert_ok(context)

    await dispatch(js, "past-grace")
    await run_worker(nc, js, slow, started_grace=0.1)
    assert kinds(await results(js)) == ["STARTED", "SUCCEEDED"]


async def test_permanent_failure_is_reported_once_and_termed(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def corrupt(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        raise MeshError(Reason.CORRUPT_INPUT, "Bad bytes.")

    before = telemetry.TASKS.labels(SERVICE, "failed")._value.get()
    await dispatch(js, "bad")
    await run_worker(nc, js, corrupt)
    assert telemetry.TASKS.labels(SERVICE, "failed")._value.get() == before + 1
    found = await results(js)
    assert kinds(found) == ["STARTED", "FAILED"]
    assert (found[-1].error_code, found[-1].error_message) == ("CORRUPT_INPUT", "Bad bytes.")
    assert calls == 1


async def test_transient_failure_is_retried_up_to_max_deliver_then_failed(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def flaky(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        raise MeshError(Reason.UNAVAILABLE, "Try later.")

    await dispatch(js, "flaky")
    await run_worker(nc, js, flaky, max_deliver=3)
    assert calls == 3
    found = await results(js)
    assert kinds(found).count("FAILED") == 1
    assert found[-1].error_code == "UNAVAILABLE"


async def test_a_task_longer_than_ack_wait_is_delivered_once(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def slow(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        await asyncio.sleep(3.5)
        context.output.write_bytes(b"late")
        return Outcome("jpg", "image/jpeg")

    await dispatch(js, "slow")
    await run_worker(nc, js, slow, ack_wait=1.2)
    assert calls == 1
    assert kinds(await results(js)) == ["STARTED", "SUCCEEDED"]


async def test_a_task_the_orchestrator_marked_settled_is_skipped(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def never(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        raise AssertionError("must not run")

    await dispatch(js, "done", settled=True)
    await run_worker(nc, js, never)
    assert calls == 0
    assert await results(js) == []
    assert (await js.stream_info(streams.TASKS_STREAM)).state.messages == 0


async def test_a_task_claimed_by_a_delivery_that_died_is_published_not_converted(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    task = await dispatch(js, "claimed")
    # What a worker killed between its claim and its publish leaves behind.
    claimed = tasks_pb2.Result(
        task_id=task.task_id,
        job_id=task.job_id,
        tenant=task.tenant,
        kind=tasks_pb2.RESULT_KIND_SUCCEEDED,
        output_blob="out/claimed/0/d1.1",
        output_size=9,
    )
    kv = await js.key_value(streams.SETTLED_BUCKET)
    await kv.put(streams.settled_key(task.task_id), claimed.SerializeToString())

    async def never(context: TaskContext) -> Outcome:
        raise AssertionError("a claimed task must not be converted again")

    await run_worker(nc, js, never)
    assert await results(js) == [claimed]


async def test_a_delivery_that_loses_the_claim_deletes_its_output_and_publishes_nothing(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    task = await dispatch(js, "lost")
    kv = await js.key_value(streams.SETTLED_BUCKET)
    written: list[str] = []

    async def overtaken(context: TaskContext) -> Outcome:
        context.output.write_bytes(b"mine")
        written.append(context.task.output_blob)
        # Another delivery claims the task while this one converts.
        winner = tasks_pb2.Result(
            task_id=task.task_id,
            kind=tasks_pb2.RESULT_KIND_SUCCEEDED,
            output_blob="out/lost/0/d9.2",
        )
        await kv.create(streams.settled_key(task.task_id), winner.SerializeToString())
        return Outcome("jpg", "image/jpeg")

    await run_worker(nc, js, overtaken)
    found = await results(js)
    assert kinds(found) == ["STARTED", "SUCCEEDED"]
    # The winner's result, published again in case its worker died before publishing it.
    assert found[-1].output_blob == "out/lost/0/d9.2"
    assert written and not await blobs.exists(js, streams.BLOBS_BUCKET, written[0])


@pytest.mark.parametrize("lost", ["claim reply", "publish"])
async def test_a_claim_whose_reply_is_lost_keeps_its_output_for_the_next_delivery(
    bus: tuple[Client, JetStreamContext], monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """A NATS node dying under the claim: it took effect, but this delivery saw an error
    (the claim's reply, or the result's publish after it). The next delivery publishes the
    claimed result, so the blob it names must still be there."""
    nc, js = bus
    task = await dispatch(js, f"reply-{lost.replace(' ', '-')}")
    real_claim = Claims.claim
    real_publish = Worker._publish
    failed: list[str] = []

    async def claim_then_lose_the_reply(self: Claims, result: tasks_pb2.Result) -> Any:
        standing = await real_claim(self, result)
        if lost == "claim reply" and not failed:
            failed.append(result.output_blob)
            raise nats.errors.TimeoutError
        return standing

    async def publish_fails_once(self: Worker, result: tasks_pb2.Result, msg_id: Any) -> None:
        if lost == "publish" and not failed and result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
            failed.append(result.output_blob)
            raise nats.js.errors.NoStreamResponseError
        await real_publish(self, result, msg_id)

    monkeypatch.setattr(Claims, "claim", claim_then_lose_the_reply)
    monkeypatch.setattr(Worker, "_publish", publish_fails_once)
    runs = 0

    async def convert(context: TaskContext) -> Outcome:
        nonlocal runs
        runs += 1
        context.output.write_bytes(b"converted")
        return Outcome("jpg", "image/jpeg")

    await run_worker(nc, js, convert)
    assert failed, "the fault was not injected"
    assert runs == 1  # the second delivery finds the claim and does not convert again
    found = await results(js)
    assert kinds(found)[-1] == "SUCCEEDED"
    assert found[-1].output_blob == failed[0]
    assert found[-1].task_id == task.task_id
    stored = blobs.read_stream(js, streams.BLOBS_BUCKET, failed[0])
    assert b"".join([chunk async for chunk in stored]) == b"converted"


async def test_the_winning_delivery_removes_what_an_interrupted_one_stored(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    await dispatch(js, "again")
    names: list[str] = []

    async def interrupted_then_fine(context: TaskContext) -> Outcome:
        names.append(context.task.output_blob)
        if len(names) == 1:
            # As a delivery killed after storing its output, before claiming: not through
            # `store`, so this runtime does not know it wrote it.
            await blobs.write_stream(js, streams.BLOBS_BUCKET, names[0], _one(b"half"))
            raise MeshError(Reason.UNAVAILABLE, "Interrupted.")
        context.output.write_bytes(b"whole")
        return Outcome("jpg", "image/jpeg")

    await run_worker(nc, js, interrupted_then_fine)
    found = await results(js)
    assert kinds(found) == ["STARTED", "SUCCEEDED"]  # a repeated STARTED is dropped
    assert found[-1].output_blob == names[1] != names[0]
    assert not await blobs.exists(js, streams.BLOBS_BUCKET, names[0])
    assert (await blobs.info(js, streams.BLOBS_BUCKET, names[1])).size == len(b"whole")


async def test_a_full_disk_is_retried_and_reported_as_resource_exhausted(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def no_space(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        # What a converter's write to a full disk raises, wrapped as decoders do.
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise MeshError(Reason.CORRUPT_INPUT, "The media could not be decoded.") from error

    await dispatch(js, "full")
    await run_worker(nc, js, no_space, max_deliver=2)
    assert calls == 2
    found = await results(js)
    assert kinds(found)[-1] == "FAILED"
    assert found[-1].error_code == "RESOURCE_EXHAUSTED"
    assert "disk space" in found[-1].error_message


async def test_a_task_past_its_scratch_quota_is_stopped_and_fails_once(
    bus: tuple[Client, JetStreamContext],
) -> None:
    nc, js = bus
    calls = 0

    async def hoarder(context: TaskContext) -> Outcome:
        nonlocal calls
        calls += 1
        with (context.scratch / "big").open("wb") as big:
            for _ in range(64):
                big.write(b"x" * 65536)
                big.flush()
                await asyncio.sleep(0.05)
        raise AssertionError("the quota should have stopped the task")

    await dispatch(js, "quota")
    await run_worker(nc, js, hoarder, scratch_bytes=1024 * 1024)
    assert calls == 1
    found = await results(js)
    assert kinds(found) == ["STARTED", "FAILED"]
    assert found[-1].error_code == "RESOURCE_EXHAUSTED"
    assert "1 MiB of scratch" in found[-1].error_message


async def test_each_task_works_in_a_folder_of_the_process_that_is_gone_afterwards(
    bus: tuple[Client, JetStreamContext], tmp_path: Path
) -> None:
    nc, js = bus
    seen: list[Path] = []

    async def look(context: TaskContext) -> Outcome:
        seen.append(context.scratch)
        context.output.write_bytes(b"x")
        return Outcome("jpg", "image/jpeg")

    await dispatch(js, "where")
    await run_worker(nc, js, look, scratch_dir=tmp_path)
    (folder,) = seen
    owned = folder.parent
    assert owned.parent == tmp_path and owned.name.startswith(f"{SERVICE}.")
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test on a local folder
