"""Issue 13 item 9: UploadBlob has a deadline. The orchestrator ends a stream that stops sending
(408 as DEADLINE_EXCEEDED, typed) and removes its chunks; the gateway's call carries a deadline
scaled to the upload limit and the minimum upload rate. A real gRPC client, a real orchestrator
and nats-server, a real uvicorn gateway; every wait is a condition."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from launcher.nats import NatsServer
from mesh import blobs
from mesh.bus import streams
from mesh.errors import Reason, from_grpc_error
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from mesh.settings import SettingsError
from services.gateway.guard import GuardLimits
from services.gateway.settings import UNRATED_UPLOAD_DEADLINE_SECONDS
from services.gateway.settings import Settings as GatewaySettings
from services.orchestrator.settings import Settings
from tests.resilience.conftest import (
    KEY,
    TENANT,
    Stack,
    field,
    gateway,
    orchestrator,
    part_head,
)

WITHIN = 60.0
MiB = 1024 * 1024


async def stored_chunks(stack: Stack) -> int:
    info = await stack.nc.jetstream().stream_info("OBJ_blobs")
    return int(info.state.messages)


async def wait_until_empty(stack: Stack) -> None:
    deadline = time.monotonic() + WITHIN
    while await stored_chunks(stack):
        assert time.monotonic() < deadline, "the silent upload's chunks were left behind"
        await asyncio.sleep(0.1)


async def test_an_upload_stream_that_goes_silent_is_ended_and_its_chunks_removed(
    nats_server: NatsServer,
) -> None:
    async with orchestrator(nats_server, Settings(upload_idle_seconds=1.0)) as stack:
        silent = asyncio.Event()
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[jobs_pb2.UploadBlobRequest]:
            header = jobs_pb2.BlobHeader(tenant=TENANT, filename="a.jpg", content_type="image/jpeg")
            yield jobs_pb2.UploadBlobRequest(header=header)
            # One chunk larger than a stored chunk (960 KiB), so that some of it is stored.
            yield jobs_pb2.UploadBlobRequest(chunk=b"\xff\xd8\xff\xe0" + bytes(MiB))
            silent.set()
            await stop.wait()  # never sends again, never closes

        async with grpc.aio.insecure_channel(stack.grpc_address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            call = stub.UploadBlob(requests(), timeout=WITHIN)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
            stop.set()
        await silent.wait()
        error = from_grpc_error(failed.value)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.reason is Reason.REQUEST_TIMEOUT
        assert error.detail["limit"] == "upload_idle_seconds"
        info = await stack.nc.jetstream().stream_info("OBJ_blobs")
        assert info.state.last_seq > 0, "nothing was stored: the test shows no clean-up"
        await wait_until_empty(stack)
        js = stack.nc.jetstream()
        assert await blobs.orphan_groups(js, streams.BLOBS_BUCKET) == []
        assert await blobs.live(js, streams.BLOBS_BUCKET) == []


async def test_an_upload_that_keeps_sending_is_not_ended_by_the_idle_timeout(
    nats_server: NatsServer,
) -> None:
    """Many pauses shorter than the idle timeout add up to more than it: still stored."""
    async with orchestrator(nats_server, Settings(upload_idle_seconds=1.0)) as stack:

        async def requests() -> AsyncIterator[jobs_pb2.UploadBlobRequest]:
            header = jobs_pb2.BlobHeader(tenant=TENANT, filename="a.png")
            yield jobs_pb2.UploadBlobRequest(header=header)
            yield jobs_pb2.UploadBlobRequest(chunk=b"\x89PNG\r\n\x1a\n")
            for _ in range(8):
                await asyncio.sleep(0.25)
                yield jobs_pb2.UploadBlobRequest(chunk=bytes(1024))

        async with grpc.aio.insecure_channel(stack.grpc_address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            response = await stub.UploadBlob(requests(), timeout=WITHIN)
    assert response.blob.size == 8 + 8 * 1024
    assert response.blob.detected_format == "png"


def test_the_gateway_upload_deadline_scales_with_the_file_limit_and_the_minimum_rate() -> None:
    guard = GuardLimits(min_bytes_per_second=1024, rate_window_seconds=30, body_idle_seconds=60)
    settings = GatewaySettings(max_file_bytes=1024 * 1024, guard=guard)
    assert settings.upload_deadline == 1024 + 2 * 30 + 60
    bigger = GatewaySettings(max_file_bytes=2 * 1024 * 1024, guard=guard)
    assert bigger.upload_deadline > settings.upload_deadline
    assert GatewaySettings(upload_deadline_seconds=5).upload_deadline == 5
    unrated = GatewaySettings(guard=GuardLimits(min_bytes_per_second=0))
    assert unrated.upload_deadline == UNRATED_UPLOAD_DEADLINE_SECONDS
    # The defaults: 2 GiB at 16 KiB/s, and a bit.
    assert 2 * 1024**3 / (16 * 1024) < GatewaySettings().upload_deadline < 2 * 86400


async def test_the_gateway_upload_call_ends_at_its_deadline_and_its_chunks_are_removed(
    stack: Stack,
) -> None:
    """A client that trickles (the guard's rate is off here) outlasts the call's deadline:
    408, and what the upload stored is removed."""
    settings = GatewaySettings(
        orchestrator=stack.grpc_address,
        api_keys={KEY: TENANT},
        guard=GuardLimits(min_bytes_per_second=0),
        upload_deadline_seconds=2.0,
    )
    async with gateway(settings) as address:
        reader, writer = await asyncio.open_connection(*address)
        head = (
            "POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"x-api-key: {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=----convertmesh-resilience\r\n"
            f"Content-Length: {64 * MiB}\r\n\r\n"
        ).encode()
        writer.write(head + field("format", "png") + part_head("files", "a.jpg"))
        writer.write(b"\xff\xd8\xff\xe0" + bytes(2 * MiB))  # some chunks are stored
        answered = asyncio.create_task(reader.read())
        with contextlib.suppress(ConnectionError):
            trickle_until = time.monotonic() + WITHIN
            while not answered.done() and time.monotonic() < trickle_until:
                writer.write(bytes(1024))  # well within the guard's idle timeout
                await asyncio.sleep(0.05)
        async with asyncio.timeout(WITHIN):
            raw = await answered
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.split()[1] == b"408", raw[:500]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["code"] == "REQUEST_TIMEOUT"
    assert body["meta"]["limit"] == "upload_deadline_seconds"
    await wait_until_empty(stack)


def test_the_orchestrator_orphan_grace_must_exceed_its_upload_idle_timeout() -> None:
    links = {"LINK_SIGNING_KEYS": "resilience-link-key-0123456789"}
    env = {**links, "UPLOAD_STREAM_IDLE_SECONDS": "300", "ORPHAN_CHUNK_GRACE_SECONDS": "200"}
    with pytest.raises(SettingsError, match=r"^ORPHAN_CHUNK_GRACE_SECONDS must be at least 330"):
        Settings.from_env(env)
    env = {**links, "UPLOAD_STREAM_IDLE_SECONDS": "30"}
    assert Settings.from_env(env).upload_idle_seconds == 30
