"""Issue 13 item 4: a client that sends its headers or body too slowly is answered 408 and cut
off, what its upload stored is removed, and uploads open at once are capped per key (429) and
in all (503). Real sockets to a real uvicorn gateway on 127.0.0.1; every wait is a condition."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from nats.js.api import StreamInfo

from services.gateway.guard import GuardLimits
from services.gateway.settings import Settings as GatewaySettings
from tests.resilience.conftest import (
    BOUNDARY,
    KEY,
    TENANT,
    Stack,
    field,
    gateway,
    part_head,
)

OTHER_KEY = "k-resilience-other"
WITHIN = 60.0  # generous: a busy machine is slow, the limits under test are short


def settings(stack: Stack, **limits: float) -> GatewaySettings:
    return GatewaySettings(
        orchestrator=stack.grpc_address,
        api_keys={KEY: TENANT, OTHER_KEY: "other"},
        guard=GuardLimits(**limits),  # type: ignore[arg-type]
    )


async def connect(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address)


def request_head(key: str, length: int, *, expect: bool = False) -> bytes:
    lines = [
        "POST /api/jobs HTTP/1.1",
        "Host: 127.0.0.1",
        f"x-api-key: {key}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {length}",
    ]
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the response, read until the server closes."""
    async with asyncio.timeout(WITHIN):
        raw = await reader.read()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def chunks_stored(stack: Stack) -> int:
    info: StreamInfo = await stack.nc.jetstream().stream_info("OBJ_blobs")
    return info.state.messages


async def test_headers_that_never_end_are_answered_408_and_closed(stack: Stack) -> None:
    async with gateway(settings(stack, header_seconds=0.5)) as address:
        reader, writer = await connect(address)
        writer.write(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-")
        status, headers, body = await answer(reader)
        writer.close()
        # A connection that never sends a byte is closed the same way.
        idle_reader, idle_writer = await connect(address)
        idle_status, _, _ = await answer(idle_reader)
        idle_writer.close()
    assert status == idle_status == 408
    assert headers["connection"] == "close"
    assert json.loads(body)["code"] == "REQUEST_TIMEOUT"


async def test_a_body_that_stops_is_408_and_its_chunks_are_removed(stack: Stack) -> None:
    async with gateway(settings(stack, body_idle_seconds=1.0)) as address:
        reader, writer = await connect(address)
        start = field("format", "png") + part_head("files", "a.jpg")
        writer.write(request_head(KEY, 64 * 1024 * 1024) + start)
        # More than a chunk (960 KiB), so the orchestrator stores some before the pause.
        writer.write(b"\xff\xd8\xff\xe0" + bytes(3 * 1024 * 1024))
        await writer.drain()
        status, headers, body = await answer(reader)
        writer.close()
    assert status == 408, body
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert error["code"] == "REQUEST_TIMEOUT" and error["meta"]["limit"] == "body_idle_seconds"
    deadline = time.monotonic() + WITHIN
    while await chunks_stored(stack):
        assert time.monotonic() < deadline, "the aborted upload's chunks were left behind"
        await asyncio.sleep(0.1)


async def test_a_body_below_the_minimum_rate_is_408(stack: Stack) -> None:
    limits = {"min_bytes_per_second": 1024 * 1024, "rate_window_seconds": 0.5}
    async with gateway(settings(stack, **limits)) as address:
        reader, writer = await connect(address)
        writer.write(request_head(KEY, 1024 * 1024) + field("format", "png"))
        writer.write(part_head("files", "a.jpg") + b"\xff\xd8\xff\xe0")
        refused = asyncio.create_task(answer(reader))
        while not refused.done():  # a trickle, well below 1 MiB/s
            writer.write(bytes(64))
            await asyncio.sleep(0.02)
        status, _, body = await refused
        writer.close()
    assert status == 408, body
    assert json.loads(body)["meta"]["limit"] == "min_bytes_per_second"


async def hold_upload(address: tuple[str, int], key: str) -> asyncio.StreamWriter:
    """An upload the gateway has started reading (it said 100 Continue) and that stays open."""
    reader, writer = await connect(address)
    writer.write(request_head(key, 1024 * 1024, expect=True))
    async with asyncio.timeout(WITHIN):
        line = await reader.readline()
    assert line.startswith(b"HTTP/1.1 100"), line
    writer.write(field("format", "png") + part_head("files", "a.jpg") + b"\xff\xd8\xff\xe0")
    return writer


async def test_uploads_open_at_once_are_capped_per_key_and_in_all(stack: Stack) -> None:
    limits = {"max_uploads_per_tenant": 2, "max_uploads": 3}
    async with gateway(settings(stack, **limits)) as address:
        held = [await hold_upload(address, KEY), await hold_upload(address, KEY)]
        reader, writer = await connect(address)
        writer.write(request_head(KEY, 1000))
        per_key = await answer(reader)
        writer.close()
        held.append(await hold_upload(address, OTHER_KEY))
        reader, writer = await connect(address)
        writer.write(request_head(OTHER_KEY, 1000))
        in_all = await answer(reader)
        writer.close()
        for writer in held:
            writer.close()
    assert per_key[0] == 429 and per_key[1]["retry-after"].isdigit()
    assert json.loads(per_key[2])["meta"]["limit"] == "uploads_per_tenant"
    assert in_all[0] == 503 and in_all[1]["retry-after"].isdigit()
    assert json.loads(in_all[2])["meta"]["limit"] == "uploads"


async def test_a_client_sending_wrong_keys_is_throttled_whatever_key_it_sends(stack: Stack) -> None:
    limits = {"max_auth_failures": 5, "auth_window_seconds": 3600}
    async with (
        gateway(settings(stack, **limits)) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=WITHIN) as http,
    ):
        wrong = [
            (await http.get("/api/jobs", headers={"x-api-key": f"guess-{n}"})).status_code
            for n in range(8)
        ]
        right = await http.get("/api/jobs", headers={"x-api-key": KEY})
    assert wrong == [401] * 5 + [429] * 3
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    assert right.json()["meta"]["limit"] == "auth_failures"
