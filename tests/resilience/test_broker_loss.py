"""Issue 13 item 7: the broker lost in the middle of an upload is a 503 with Retry-After (the
client may retry), never a 500; no body shows exception text."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx

from mesh.errors import MeshError, Reason
from services.gateway.app import error_headers
from services.gateway.settings import Settings as GatewaySettings
from tests.resilience.conftest import (
    HEADERS,
    KEY,
    TENANT,
    Stack,
    closing,
    field,
    gateway,
    part_head,
)

PIECE = 256 * 1024


async def test_broker_killed_during_an_upload_is_503_with_retry_after(stack: Stack) -> None:
    sent = 0
    killed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield field("format", "png")
        yield part_head("files", "big.jpg")
        yield b"\xff\xd8\xff\xe0" + os.urandom(PIECE - 4)
        # Stream on while the broker is gone, until the gateway answers (or 64 MiB).
        for _ in range(256):
            sent += PIECE
            if sent == 8 * PIECE:
                stack.nats.kill()
                killed.set()
            yield os.urandom(PIECE)
            if killed.is_set():
                await asyncio.sleep(0.01)
        yield closing()

    settings = GatewaySettings(orchestrator=stack.grpc_address, api_keys={KEY: TENANT})
    try:
        async with (
            gateway(settings) as (host, port),
            httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=120) as http,
        ):
            response = await http.post("/api/jobs", headers=HEADERS, content=body())
    finally:
        stack.nats.restart()
    assert killed.is_set()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    answer = response.json()
    assert answer["code"] == "UNAVAILABLE"
    assert "Error" not in response.text and "cause" not in answer["meta"], answer


def test_only_429_and_503_tell_the_client_to_come_back() -> None:
    for reason in Reason:
        headers = error_headers(MeshError(reason))
        assert ("Retry-After" in headers) == (reason.http_status in (429, 503)), reason
    assert MeshError(Reason.INTERNAL).reason.http_status == 500
    assert "Retry-After" not in error_headers(MeshError(Reason.INTERNAL))
