"""Job watches (WatchJob) against a real nats-server: every watch of a replica is served by one
shared watch of the jobs bucket; and the store's remembered revisions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import nats.aio.msg
import nats.aio.subscription
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launcher.nats import NatsServer, start_nats
from mesh import blobs
from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator.store import JobStore
from services.orchestrator.watches import JobWatches
from tests.orchestrator.conftest import Orchestrator

TENANT = "acme"
DONE = jobs_pb2.JOB_STATUS_COMPLETED


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _connected(url: str, **options: object) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, **options)
    try:
        js = nc.jetstream()
        await streams.ensure(js, streams.Retention())
        yield nc, js
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


@contextlib.asynccontextmanager
async def _watching(js: JetStreamContext, **options: float) -> AsyncIterator[JobWatches]:
    watches = JobWatches(js, await JobStore.open(js), **options)  # type: ignore[arg-type]
    await watches.start()
    try:
        yield watches
    finally:
        await watches.stop()


async def _consumers(js: JetStreamContext) -> int:
    return int((await js.stream_info(f"KV_{streams.JOBS_BUCKET}")).state.consumer_count)


async def _create(store: JobStore, job_id: str) -> None:
    job = jobs_pb2.Job(tenant=TENANT, job_id=job_id, status=jobs_pb2.JOB_STATUS_PENDING)
    await store.create(state_pb2.JobRecord(job=job))


async def _step(store: JobStore, job_id: str, status: int = 0) -> None:
    def change(record: state_pb2.JobRecord) -> bool:
        record.job.progress += 1
        if status:
            record.job.status = status  # type: ignore[assignment]
        return True

    await store.mutate(TENANT, job_id, change)


async def _to_the_end(watches: JobWatches, job_id: str) -> list[jobs_pb2.Job]:
    seen = []
    async with asyncio.timeout(60), contextlib.aclosing(watches.watch(TENANT, job_id)) as records:
        async for record in records:
            seen.append(record.job)
            if record.job.status == DONE:
                return seen
    raise AssertionError("the watch ended without the job's end")


async def test_many_concurrent_watches_share_one_consumer_and_each_sees_its_own_end(
    nats_server: NatsServer,
) -> None:
    async with _connected(nats_server.url) as (_, js), _watching(js) as watches:
        store = await JobStore.open(js)
        before = await _consumers(js)
        ids = [f"many-{number}" for number in range(40)]
        for job_id in ids:
            await _create(store, job_id)
        watching = [asyncio.create_task(_to_the_end(watches, job_id)) for job_id in ids]

        async def all_registered() -> bool:
            return watches.watching == len(ids)

        await _until(all_registered, 60, "the watches did not register")
        for job_id in ids:
            await _step(store, job_id)
        for job_id in ids:
            await _step(store, job_id, DONE)
        results = await asyncio.gather(*watching)
        assert await _consumers(js) == before  # no consumer per watch
        for job_id, seen in zip(ids, results, strict=True):
            assert {job.job_id for job in seen} == {job_id}
            assert seen[-1].status == DONE and seen[-1].progress == 2
            progress = [job.progress for job in seen]
            assert progress == sorted(set(progress))  # in order, never a revision twice
        assert watches.watching == 0
        assert watches.subscriptions == 1


async def test_a_watch_joining_after_the_end_gets_the_current_state_first(
    nats_server: NatsServer,
) -> None:
    async with _connected(nats_server.url) as (_, js), _watching(js) as watches:
        store = await JobStore.open(js)
        await _create(store, "late")
        await _step(store, "late")
        await _step(store, "late", DONE)
        seen = await _to_the_end(watches, "late")
        assert [(job.status, job.progress) for job in seen] == [(DONE, 2)]


async def test_watching_no_such_job_is_not_found(nats_server: NatsServer) -> None:
    async with _connected(nats_server.url) as (_, js), _watching(js) as watches:
        with pytest.raises(MeshError) as missing:
            await anext(watches.watch(TENANT, "never-created"))
        assert missing.value.reason is Reason.NOT_FOUND
        assert watches.watching == 0


async def test_a_slow_watcher_keeps_only_the_newest_revisions(nats_server: NatsServer) -> None:
    async with _connected(nats_server.url) as (_, js), _watching(js, keep=3) as watches:
        store = await JobStore.open(js)
        await _create(store, "slow")
        await _create(store, "brisk")
        slow = watches.watch(TENANT, "slow")
        first = await anext(slow)  # registered; then it takes nothing for a while
        assert first.job.progress == 0
        brisk = asyncio.create_task(_to_the_end(watches, "brisk"))
        for _ in range(30):
            await _step(store, "slow")
        await _step(store, "slow", DONE)
        await _step(store, "brisk", DONE)
        assert (await brisk)[-1].status == DONE  # not held up by the slow one
        assert watches.watching == 1
        seen = []
        async with asyncio.timeout(60):
            async for record in slow:
                seen.append(record.job)
                if record.job.status == DONE:
                    break
        await slow.aclose()
        assert len(seen) <= 3
        assert seen[-1].progress == 31 and seen[-1].status == DONE


async def test_the_shared_watch_comes_back_after_its_consumer_is_removed(
    nats_server: NatsServer,
) -> None:
    async with (
        _connected(nats_server.url) as (_, js),
        _watching(js, check_seconds=0.2) as watches,
    ):
        store = await JobStore.open(js)
        await _create(store, "lost")
        watching = asyncio.create_task(_to_the_end(watches, "lost"))

        async def registered() -> bool:
            return watches.watching == 1

        await _until(registered, 60, "the watch did not register")
        stream = f"KV_{streams.JOBS_BUCKET}"
        for consumer in await js.consumers_info(stream):
            await js.delete_consumer(stream, consumer.name)
        await _step(store, "lost")  # written while the shared watch has no consumer

        async def renewed() -> bool:
            return watches.subscriptions >= 2

        await _until(renewed, 60, "the shared watch was not re-created")
        await _step(store, "lost", DONE)
        seen = await watching
        assert seen[-1].status == DONE and seen[-1].progress == 2


async def test_the_shared_watch_survives_a_broker_restart(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    try:
        reconnected = asyncio.Event()
        shared: list[JobWatches] = []

        async def on_reconnect() -> None:
            reconnected.set()
            for watches in shared:
                watches.reconnected()

        async with (
            _connected(server.url, reconnected_cb=on_reconnect) as (_, js),
            _watching(js, check_seconds=0.5) as watches,
        ):
            shared.append(watches)
            store = await JobStore.open(js)
            await _create(store, "restart")
            watching = asyncio.create_task(_to_the_end(watches, "restart"))

            async def registered() -> bool:
                return watches.watching == 1

            await _until(registered, 60, "the watch did not register")
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.restart)
            async with asyncio.timeout(60):
                await reconnected.wait()

            async def writable() -> bool:
                try:
                    await _step(store, "restart")
                except Exception:
                    return False
                return True

            await _until(writable, 60, "the bucket is not writable after the restart")
            await _step(store, "restart", DONE)
            seen = await watching
            assert seen[-1].status == DONE
            assert watches.subscriptions >= 2
    finally:
        server.stop()


async def _reads(
    nc: Client, counted: Callable[[nats.aio.msg.Msg], Awaitable[None]]
) -> list[nats.aio.subscription.Subscription]:
    """Subscriptions that see every read of a jobs record, direct or through the API."""
    stream = f"KV_{streams.JOBS_BUCKET}"
    return [
        await nc.subscribe(f"$JS.API.DIRECT.GET.{stream}.>", cb=counted),
        await nc.subscribe(f"$JS.API.DIRECT.GET.{stream}", cb=counted),
        await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{stream}", cb=counted),
    ]


async def test_remembered_revisions_write_without_reading_and_lose_nothing_on_conflict(
    nats_server: NatsServer,
) -> None:
    # Two stores stand for two replicas changing one job in turn: each remembers a revision
    # the other has made stale, so every other write conflicts and is decided again.
    async with _connected(nats_server.url) as (nc, js):
        first, second = await JobStore.open(js), await JobStore.open(js)
        gets: list[str] = []

        async def counted(msg: nats.aio.msg.Msg) -> None:
            gets.append(msg.subject)

        subs = await _reads(nc, counted)
        await _create(first, "shared")
        await nc.flush()
        for _ in range(3):
            await _step(first, "shared")  # first's own revision: no read
        await nc.flush()
        assert gets == []
        for number in range(10):
            await _step(second if number % 2 else first, "shared")
        record, _ = await first.get(TENANT, "shared")
        assert record.job.progress == 13
        await nc.flush()
        assert gets
        # A change that does nothing to a stale remembered record is decided on the bucket's.
        await _step(second, "shared")

        def only_at(progress: int) -> Callable[[state_pb2.JobRecord], bool]:
            def change(record: state_pb2.JobRecord) -> bool:
                if record.job.progress != progress:
                    return False
                record.job.progress += 100
                return True

            return change

        _, changed = await first.mutate(TENANT, "shared", only_at(14))
        assert changed
        assert (await second.get(TENANT, "shared"))[0].job.progress == 114
        for sub in subs:
            await sub.unsubscribe()


async def test_a_store_that_remembers_nothing_reads_before_every_write(
    nats_server: NatsServer,
) -> None:
    async with _connected(nats_server.url) as (nc, js):
        store = await JobStore.open(js, known_entries=0)
        gets: list[str] = []

        async def counted(msg: nats.aio.msg.Msg) -> None:
            gets.append(msg.subject)

        subs = await _reads(nc, counted)
        await _create(store, "forgetful")
        for _ in range(3):
            await _step(store, "forgetful")
        await nc.flush()
        assert len(gets) == 3
        for sub in subs:
            await sub.unsubscribe()


async def _download(orchestrator: Orchestrator, job_id: str) -> bytes:
    parts = orchestrator.stub.ReadOutput(
        jobs_pb2.ReadOutputRequest(tenant=TENANT, job_id=job_id, index=0)
    )
    return b"".join([part.chunk async for part in parts if part.WhichOneof("part") == "chunk"])


def _one_file(job_id: str, blob: str, status: int) -> state_pb2.JobRecord:
    job = jobs_pb2.Job(tenant=TENANT, job_id=job_id, status=jobs_pb2.JOB_STATUS_PROCESSING)
    job.files.add(
        filename="a.png",
        status=status,
        output_format="jpg",
        mime_type="image/jpeg",
        output_filename="a.jpg",
    )
    record = state_pb2.JobRecord(job=job)
    record.tasks.add(index=0, task_id=f"{job_id}.0", output_blob=blob)
    return record


async def test_a_remembered_completed_output_is_read_without_the_job_record(
    orchestrator: Orchestrator,
) -> None:
    js, nc = orchestrator.js, orchestrator.nc
    await blobs.write_stream(js, streams.BLOBS_BUCKET, "out/remembered/0", _chunks(b"done"))
    await orchestrator.store.create(
        _one_file("remembered", "out/remembered/0", jobs_pb2.FILE_STATUS_COMPLETED)
    )
    gets: list[str] = []

    async def counted(msg: nats.aio.msg.Msg) -> None:
        gets.append(msg.subject)

    subs = await _reads(nc, counted)
    await nc.flush()
    assert await _download(orchestrator, "remembered") == b"done"
    await nc.flush()
    assert gets == []
    # Remembered before its file completed (another replica applied the result): the
    # remembered record has no output, so the bucket's is read.
    await blobs.write_stream(js, streams.BLOBS_BUCKET, "out/stale/0", _chunks(b"later"))
    await orchestrator.store.create(_one_file("stale", "out/stale/0", jobs_pb2.FILE_STATUS_PENDING))
    other = await JobStore.open(js)

    def complete(record: state_pb2.JobRecord) -> bool:
        record.job.files[0].status = jobs_pb2.FILE_STATUS_COMPLETED
        return True

    await other.mutate(TENANT, "stale", complete)
    await nc.flush()
    gets.clear()
    assert await _download(orchestrator, "stale") == b"later"
    await nc.flush()
    assert len(gets) == 1
    for sub in subs:
        await sub.unsubscribe()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
