"""sourceUrl fetches: a real nats-server object store, a loopback file server opened by the
operator allowlist, and a loopback canary port that must see no connection at all.

Every refused URL points at the canary. An audit hook on `socket.connect` also refuses (and
counts) any connection this module's tests try to a non-loopback address, so a guard that let
one through could never send a packet off the machine."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from launcher.nats import NatsServer
from mesh import blobs
from mesh.errors import MeshError, Reason
from services.orchestrator import fetch, urlguard
from tests.mesh.http_receiver import Answer, Received, Receiver
from tests.orchestrator.refused import REFUSED, Canary

BUCKET = "FETCHES"
SAMPLE = Path("/work/shared/corpus/go-mediainfo/sample.mp4")
LOOPBACK = ("127.", "::1")
_guarded = threading.Event()
_off_machine: list[object] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _guarded.is_set():
        return
    address = args[1]
    host = address[0] if isinstance(address, tuple) else str(address)
    if not str(host).startswith(LOOPBACK):
        _off_machine.append(address)
        raise PermissionError(f"test refused a connection to {host}")


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    running = Canary()
    _guarded.set()
    yield running
    _guarded.clear()
    running.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await blobs.ensure_bucket(client.jetstream(), BUCKET)
    yield client
    await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@dataclass(frozen=True)
class Web:
    server: Receiver
    canary: Canary
    # The file server's port only: the canary shares its address but not its port.
    allow: urlguard.Allowlist


@pytest.fixture
def web(server: Receiver, canary: Canary) -> Web:
    return Web(server, canary, urlguard.Allowlist.parse(f"127.0.0.1:{server.port}"))


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE.read_bytes()


LIMITS = fetch.FetchLimits(max_bytes=8 * 1024 * 1024, total_seconds=30, idle_seconds=10)


async def _fetch(
    js: JetStreamContext, url: str, allow: urlguard.Allowlist, limits: fetch.FetchLimits = LIMITS
) -> fetch.Fetched:
    name = f"src/{uuid.uuid4().hex}"
    return await fetch.fetch_to_store(js, url, bucket=BUCKET, name=name, allow=allow, limits=limits)


async def _stored_messages(js: JetStreamContext) -> int:
    info = await js.stream_info(f"OBJ_{BUCKET}")
    return int(info.state.messages)


def _serve(server: Receiver, path: str, answer: Answer) -> str:
    async def handler(_: Received) -> Answer:
        return answer

    server.routes[path] = handler
    return server.url(path)


async def test_a_file_streams_into_the_store_with_its_sniffed_type(
    js: JetStreamContext, web: Web, sample: bytes
) -> None:
    data = sample
    url = _serve(web.server, "/files/clip.bin", (200, {"Content-Type": "text/html"}, data))
    fetched = await _fetch(js, url, web.allow)
    assert (fetched.sniffed.format, fetched.mime_type) == ("mp4", "video/mp4")
    assert fetched.filename == "clip.bin" and fetched.blob.size == len(data)
    assert fetched.blob.sha256 == hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    async with aclosing(blobs.read_stream(js, BUCKET, fetched.blob.name)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
    assert digest.hexdigest() == fetched.blob.sha256


async def test_schemes_compare_case_insensitively_and_names_come_from_the_server(
    js: JetStreamContext, web: Web
) -> None:
    # A C1 control (NEL): C0 controls are refused on the wire by the HTTP server itself.
    headers = {"Content-Disposition": 'attachment; filename="../../report\x85.pdf"'}
    url = _serve(web.server, "/d", (200, headers, b"%PDF-1.4\n%%EOF\n"))
    fetched = await _fetch(js, url.replace("http://", "HtTp://"), web.allow)
    assert fetched.filename == "report.pdf" and fetched.sniffed.format == "pdf"


@pytest.mark.parametrize(("url", "why"), REFUSED)
async def test_non_public_addresses_are_refused(
    url: str, why: str, js: JetStreamContext, web: Web
) -> None:
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url.format(canary=web.canary.port), web.allow)
    error = caught.value
    assert error.reason is Reason.INVALID_FIELD
    assert why in error.detail["fields"]["sourceUrl"] and error.message.startswith("sourceUrl:")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "FTP://127.0.0.1/x", "gopher://127.0.0.1:{canary}/", "//127.0.0.1/"],
)
async def test_other_schemes_are_refused(url: str, js: JetStreamContext, web: Web) -> None:
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url.format(canary=web.canary.port), web.allow)
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "http or https" in caught.value.message


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "http://127.0.0.1:{canary}/"),
        (307, "http://169.254.169.254/latest/meta-data/"),
        (303, "http://[::ffff:127.0.0.1]:{canary}/"),
        (301, "HTTP://0.0.0.0:{canary}/"),
    ],
)
async def test_a_redirect_to_a_refused_address_is_not_followed(
    status: int, location: str, js: JetStreamContext, web: Web
) -> None:
    url = _serve(
        web.server,
        f"/moved-{status}",
        (status, {"Location": location.format(canary=web.canary.port)}, b""),
    )
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url, web.allow)
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "sourceUrl" in caught.value.detail["fields"]


async def test_a_redirect_to_an_allowed_url_is_followed(js: JetStreamContext, web: Web) -> None:
    _serve(web.server, "/target.png", (200, {}, b"\x89PNG\r\n\x1a\n" + bytes(64)))
    url = _serve(web.server, "/short", (302, {"Location": "/target.png"}, b""))
    fetched = await _fetch(js, url, web.allow)
    assert fetched.url.endswith("/target.png") and fetched.sniffed.format == "png"


async def _pieces(count: int, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    piece = bytes(size)
    for _ in range(count):
        yield piece
        if pause:
            await asyncio.sleep(pause)


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    js: JetStreamContext, web: Web
) -> None:
    before = await _stored_messages(js)
    url = _serve(
        web.server,
        "/declared",
        (200, {"Content-Length": str(9 * 1024 * 1024)}, _pieces(9, 1024 * 1024)),
    )
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url, web.allow)
    assert caught.value.reason is Reason.TOO_LARGE
    assert await _stored_messages(js) == before


async def test_a_streamed_body_over_the_limit_is_cut_off_and_removed(
    js: JetStreamContext, web: Web
) -> None:
    before = await _stored_messages(js)

    async def endless(_: Received) -> Answer:
        return 200, {}, _pieces(64, 256 * 1024)  # 16 MiB, chunked, no length

    web.server.routes["/endless"] = endless
    limits = fetch.FetchLimits(max_bytes=3 * 1024 * 1024, total_seconds=60, idle_seconds=10)
    with pytest.raises(MeshError) as caught:
        await _fetch(js, web.server.url("/endless"), web.allow, limits)
    assert caught.value.reason is Reason.TOO_LARGE
    assert "sourceUrl" in caught.value.detail["fields"]
    assert await _stored_messages(js) == before


async def test_a_trickling_server_is_cut_off_by_the_time_limit(
    js: JetStreamContext, web: Web
) -> None:
    before = await _stored_messages(js)

    async def trickle(_: Received) -> Answer:
        return 200, {}, _pieces(600, 16, pause=0.05)

    web.server.routes["/trickle"] = trickle
    limits = fetch.FetchLimits(
        max_bytes=1 << 20, total_seconds=1.0, idle_seconds=10, min_bytes_per_second=0
    )
    with pytest.raises(MeshError) as caught:
        await _fetch(js, web.server.url("/trickle"), web.allow, limits)
    assert caught.value.reason is Reason.TIMEOUT
    assert "within 1 s" in caught.value.message
    assert await _stored_messages(js) == before


async def test_a_server_below_the_minimum_rate_is_cut_off(js: JetStreamContext, web: Web) -> None:
    async def slow(_: Received) -> Answer:
        return 200, {}, _pieces(600, 100, pause=0.02)  # at most 5 KB/s

    web.server.routes["/slow"] = slow
    limits = fetch.FetchLimits(
        max_bytes=1 << 20,
        total_seconds=60,
        idle_seconds=10,
        min_bytes_per_second=50_000,
        rate_window_seconds=0.5,
    )
    with pytest.raises(MeshError) as caught:
        await _fetch(js, web.server.url("/slow"), web.allow, limits)
    assert caught.value.reason is Reason.TIMEOUT
    assert "bytes per second" in caught.value.message


async def test_a_silent_server_is_cut_off_by_the_idle_limit(js: JetStreamContext, web: Web) -> None:
    async def silent(_: Received) -> Answer:
        return 200, {}, _pieces(2, 10, pause=20)

    web.server.routes["/silent"] = silent
    limits = fetch.FetchLimits(max_bytes=1 << 20, total_seconds=60, idle_seconds=0.5)
    with pytest.raises(MeshError) as caught:
        await _fetch(js, web.server.url("/silent"), web.allow, limits)
    assert caught.value.reason is Reason.TIMEOUT


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, Reason.INVALID_FIELD), (403, Reason.INVALID_FIELD), (503, Reason.UNAVAILABLE)],
)
async def test_error_answers_are_reported(
    status: int, reason: Reason, js: JetStreamContext, web: Web
) -> None:
    url = _serve(web.server, f"/status-{status}", (status, {}, b"nope"))
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url, web.allow)
    assert caught.value.reason is reason and str(status) in caught.value.message


async def test_a_compressed_body_is_refused(js: JetStreamContext, web: Web) -> None:
    url = _serve(web.server, "/gz", (200, {"Content-Encoding": "gzip"}, b"\x1f\x8b" + bytes(20)))
    with pytest.raises(MeshError) as caught:
        await _fetch(js, url, web.allow)
    assert caught.value.reason is Reason.INVALID_FIELD and "gzip" in caught.value.message


async def test_a_large_fetch_never_holds_the_file_in_memory(js: JetStreamContext, web: Web) -> None:
    size = 64 * 1024 * 1024

    async def big(_: Received) -> Answer:
        return 200, {"Content-Length": str(size)}, _pieces(size // (256 * 1024), 256 * 1024)

    web.server.routes["/big"] = big
    limits = fetch.FetchLimits(max_bytes=size, total_seconds=120, idle_seconds=30)
    tracemalloc.start()
    try:
        fetched = await _fetch(js, web.server.url("/big"), web.allow, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fetched.blob.size == size
    assert peak < size // 3  # the receiver's own pieces included
    await blobs.delete(js, BUCKET, fetched.blob.name)


def test_the_canary_saw_no_connection_and_nothing_left_the_machine(web: Web) -> None:
    assert web.canary.connections == 0
    assert _off_machine == []
