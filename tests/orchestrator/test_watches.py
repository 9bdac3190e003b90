"""Job watches (WatchJob) against a real nats-server: a stopped watch leaves nothing behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import nats

from launcher.nats import NatsServer
from mesh.bus import streams
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator.store import JobStore


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_stopped_job_watches_leave_no_consumers_behind(nats_server: NatsServer) -> None:
    # Each watch is an ordered consumer of the jobs bucket's stream. They used to outlive their
    # watch by nats-py's 5 min default, so a busy mesh reached the server's 1,000 consumers per
    # stream and every further watch (every sync request) failed.
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await streams.ensure(js, streams.Retention())
        store = await JobStore.open(js)

        async def consumers() -> int:
            info = await js.stream_info(f"KV_{streams.JOBS_BUCKET}")
            return int(info.state.consumer_count)

        before = await consumers()
        for number in range(12):
            job_id = f"watched-{number}"
            job = jobs_pb2.Job(tenant="acme", job_id=job_id)
            await store.create(state_pb2.JobRecord(job=job))
            seen = asyncio.Event()

            async def watch(job_id: str = job_id, seen: asyncio.Event = seen) -> None:
                async for _record in store.watch("acme", job_id):
                    seen.set()

            watching = asyncio.create_task(watch())
            async with asyncio.timeout(60):
                await seen.wait()  # the watch is open and has delivered the record
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        assert await consumers() > before  # they were there

        async def gone() -> bool:
            return await consumers() <= before

        await _until(gone, 120, "stopped watches left their consumers on the server")
    finally:
        await nc.close()
