"""Listing a 5 000-job tenant: first and last page through the orchestrator's index, against
a per-request scan of the tenant's keys (the naive way) in the same run.

    .venv/bin/python -m bench.listing [--jobs 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import nats
from grpc_health.v1._async import HealthServicer

from launcher.nats import start_nats
from mesh.bus import streams
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from mesh.state.v1 import state_pb2
from services.orchestrator import state
from services.orchestrator.index import JobIndex
from services.orchestrator.server import JobService, create_server
from services.orchestrator.settings import Settings
from services.orchestrator.store import JobStore

TENANT = "big"


async def naive_page(store: JobStore, limit: int, offset: int) -> list[str]:
    watcher = await store.jobs_bucket.watch(f"{TENANT}.*")
    jobs = []
    try:
        async for entry in watcher:
            if entry is None:
                break
            jobs.append(state_pb2.JobRecord.FromString(entry.value).job)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    jobs.sort(key=lambda j: j.created_at.ToNanoseconds(), reverse=True)
    return [j.job_id for j in jobs[offset : offset + limit]]


async def timed(call: object, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_nats(Path(tmp))
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await streams.ensure(js, streams.Retention())
            store = await JobStore.open(js)
            base = state.now().ToNanoseconds()
            started = time.perf_counter()
            for n in range(count):
                job = jobs_pb2.Job(
                    job_id=f"job-{n:06d}", tenant=TENANT, status=jobs_pb2.JOB_STATUS_COMPLETED
                )
                job.created_at.FromNanoseconds(base + n)
                job.updated_at.CopyFrom(state.now())
                job.files.append(jobs_pb2.FileResult(index=0, filename="photo.jpg"))
                await store.create(state_pb2.JobRecord(job=job))
            print(f"wrote {count} jobs in {time.perf_counter() - started:.1f} s")
            index = JobIndex(store.jobs_bucket, 3600)
            started = time.perf_counter()
            await index.start()
            print(f"index built in {(time.perf_counter() - started) * 1000:.0f} ms")
            grpc_server, port = create_server(
                JobService(js, store, index, Settings()), HealthServicer(), "127.0.0.1", 0
            )
            await grpc_server.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                last_offset = count - 20
                rows = []
                for label, offset in (("first page", 0), ("last page", last_offset)):
                    ours = await timed(
                        lambda o=offset: stub.ListJobs(
                            jobs_pb2.ListJobsRequest(tenant=TENANT, limit=20, offset=o)
                        ),
                        20,
                    )
                    naive = await timed(lambda o=offset: naive_page(store, 20, o), 5)
                    rows.append((label, ours, naive))
            print(f"{'':12} {'index (gRPC)':>14} {'scan baseline':>14} {'ratio':>8}")
            for label, ours, naive in rows:
                print(f"{label:12} {ours:11.1f} ms {naive:11.1f} ms {ours / naive:8.3f}")
            await grpc_server.stop(0)
            await index.stop()
        finally:
            await nc.close()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    asyncio.run(main(parser.parse_args().jobs))
