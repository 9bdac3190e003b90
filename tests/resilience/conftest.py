"""A real nats-server, an in-process orchestrator and a real gateway (uvicorn on 127.0.0.1):
what the gateway answers while its dependencies fail, and what it holds while clients stall."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import uvicorn
from grpc_health.v1._async import HealthServicer
from nats.aio.client import Client

from launcher.nats import NatsServer, start_nats
from mesh.bus import streams
from services.gateway.app import create_app
from services.gateway.guard import uvicorn_options
from services.gateway.settings import Settings as GatewaySettings
from services.orchestrator.index import JobIndex
from services.orchestrator.server import JobService, create_server
from services.orchestrator.settings import Settings
from services.orchestrator.store import JobStore
from services.orchestrator.watches import JobWatches

KEY = "k-resilience-0123"
TENANT = "acme"
BOUNDARY = "----convertmesh-resilience"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


@dataclass
class Stack:
    nats: NatsServer
    nc: Client
    grpc_address: str


@pytest.fixture
async def stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    async with orchestrator(nats_server, Settings()) as started:
        yield started


@contextlib.asynccontextmanager
async def orchestrator(nats_server: NatsServer, settings: Settings) -> AsyncIterator[Stack]:
    """An in-process orchestrator with these settings on the nats-server."""
    reconnected = asyncio.Event()
    watching: list[JobWatches] = []

    async def on_reconnect() -> None:
        reconnected.set()
        for watches in watching:
            watches.reconnected()

    nc = await nats.connect(
        nats_server.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        reconnected_cb=on_reconnect,
    )
    js = nc.jetstream()
    await streams.ensure(js, streams.Retention())
    store = await JobStore.open(js)
    index = JobIndex(store.jobs_bucket, 3600)
    await index.start()
    watches = JobWatches(js, store)
    await watches.start()
    watching.append(watches)
    server, port = create_server(
        JobService(js, store, index, settings, watches=watches), HealthServicer(), "127.0.0.1", 0
    )
    await server.start()
    try:
        yield Stack(nats_server, nc, f"127.0.0.1:{port}")
    finally:
        await server.stop(0)
        await watches.stop()
        await index.stop()
        # A test that killed the broker restarted it; the client may still be reconnecting.
        if not nc.is_connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reconnected.wait(), 30)
        with contextlib.suppress(ConnectionError):
            await nc.close()


@contextlib.asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[tuple[str, int]]:
    """The gateway served by uvicorn as `python -m services.gateway` serves it, on a port of
    its own; yields (host, port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(settings),
        loop="asyncio",
        log_config=None,
        access_log=False,
        lifespan="on",
        **uvicorn_options(settings.guard, settings.max_connections, settings.forwarded_allow_ips),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not serving.done(), "the gateway did not start"
            await asyncio.sleep(0.01)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await serving
        sock.close()


def part_head(name: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()


def field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def closing() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"x-api-key": KEY, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
