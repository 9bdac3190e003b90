"""A real nats-server and an in-process orchestrator gRPC server on port 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import grpc
import nats
import pytest
from grpc_health.v1._async import HealthServicer
from nats.aio.client import Client
from nats.js import JetStreamContext

from launcher.nats import NatsServer, start_nats
from mesh.bus import streams
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.orchestrator.index import JobIndex
from services.orchestrator.server import JobService, create_server
from services.orchestrator.settings import Settings
from services.orchestrator.store import JobStore
from services.orchestrator.watches import JobWatches


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@dataclass
class Orchestrator:
    nc: Client
    js: JetStreamContext
    store: JobStore
    index: JobIndex
    stub: jobs_pb2_grpc.JobServiceStub
    watches: JobWatches


@pytest.fixture(scope="module")
async def orchestrator(nats_server: NatsServer) -> AsyncIterator[Orchestrator]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await streams.ensure(js, streams.Retention())
    store = await JobStore.open(js)
    index = JobIndex(store.jobs_bucket, 3600)
    await index.start()
    watches = JobWatches(js, store)
    await watches.start()
    settings = Settings(max_active_jobs_per_tenant=3, max_files_per_job=4)
    server, port = create_server(
        JobService(js, store, index, settings, watches=watches), HealthServicer(), "127.0.0.1", 0
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        yield Orchestrator(nc, js, store, index, stub, watches)
    finally:
        await channel.close()
        await server.stop(0)
        await watches.stop()
        await index.stop()
        await nc.close()


async def upload(stub: jobs_pb2_grpc.JobServiceStub, tenant: str, data: bytes) -> str:
    async def requests() -> AsyncIterator[jobs_pb2.UploadBlobRequest]:
        yield jobs_pb2.UploadBlobRequest(header=jobs_pb2.BlobHeader(tenant=tenant, filename="f"))
        yield jobs_pb2.UploadBlobRequest(chunk=data)

    response: jobs_pb2.UploadBlobResponse = await stub.UploadBlob(requests())
    return response.blob.blob_id


async def settle(caught_up: Callable[[], bool], within: float = 30.0) -> None:
    """Waits until the index's watch has caught up with writes made just before, as
    `caught_up` tells; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while not caught_up():
        assert time.monotonic() < deadline, "the index did not catch up"
        await asyncio.sleep(0.02)
