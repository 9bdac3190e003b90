"""Outbound requests go to the pinned address and re-check every redirect with the guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from launcher.nats import free_port
from mesh.errors import MeshError, Reason
from services.orchestrator import outbound, urlguard
from tests.mesh.http_receiver import Answer, Received, Receiver

LOOPBACK = urlguard.Allowlist.parse("127.0.0.1")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def post(body: bytes = b"{}") -> outbound.Request:
    return outbound.Request("POST", {"Content-Type": "application/json"}, body)


async def test_connects_to_the_pinned_address_with_the_urls_host(receiver: Receiver) -> None:
    # The name does not resolve anywhere: only the pinned address can have been used.
    target = urlguard.Target(
        url=f"http://hooks.customer.invalid:{receiver.port}/pinned?x=1",
        scheme="http",
        host="hooks.customer.invalid",
        port=receiver.port,
        address="127.0.0.1",
        target="/pinned?x=1",
    )
    response = await outbound.send(post(b'{"a":1}'), target, allow=LOOPBACK)
    assert response.status == 200
    seen = receiver.at("/pinned")[-1]
    assert seen.headers["host"] == f"hooks.customer.invalid:{receiver.port}"
    assert (seen.method, seen.body) == ("POST", b'{"a":1}')


async def test_redirect_to_a_refused_address_is_not_followed(receiver: Receiver) -> None:
    async def to_metadata(_: Received) -> Answer:
        return 307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""

    receiver.routes["/to-metadata"] = to_metadata
    target = urlguard.check(receiver.url("/to-metadata"), LOOPBACK)
    with pytest.raises(MeshError) as caught:
        await outbound.send(post(), target, allow=LOOPBACK, field="callbackUrl")
    assert caught.value.reason is Reason.INVALID_FIELD
    assert "metadata" in caught.value.detail["fields"]["callbackUrl"]


async def test_redirect_to_an_allowed_url_repeats_the_post(receiver: Receiver) -> None:
    async def moved(_: Received) -> Answer:
        return 308, {"Location": "/landed"}, b""

    receiver.routes["/moved"] = moved
    target = urlguard.check(receiver.url("/moved"), LOOPBACK)
    response = await outbound.send(post(b"payload"), target, allow=LOOPBACK)
    assert response.status == 200 and response.url.endswith("/landed")
    landed = receiver.at("/landed")[-1]
    assert (landed.method, landed.body) == ("POST", b"payload")


async def test_see_other_becomes_a_get_without_body(receiver: Receiver) -> None:
    async def see_other(_: Received) -> Answer:
        return 303, {"Location": "/other"}, b""

    receiver.routes["/see-other"] = see_other
    target = urlguard.check(receiver.url("/see-other"), LOOPBACK)
    await outbound.send(post(b"payload"), target, allow=LOOPBACK)
    other = receiver.at("/other")[-1]
    assert (other.method, other.body) == ("GET", b"")


async def test_redirect_loops_stop_after_the_limit(receiver: Receiver) -> None:
    async def loop(_: Received) -> Answer:
        return 302, {"Location": "/loop"}, b""

    receiver.routes["/loop"] = loop
    before = len(receiver.at("/loop"))
    target = urlguard.check(receiver.url("/loop"), LOOPBACK)
    with pytest.raises(MeshError) as caught:
        await outbound.send(post(), target, allow=LOOPBACK, max_redirects=3)
    assert caught.value.reason is Reason.UNAVAILABLE
    assert len(receiver.at("/loop")) - before == 4


async def test_response_body_is_capped(receiver: Receiver) -> None:
    async def huge(_: Received) -> Answer:
        return 500, {}, b"x" * 1_000_000

    receiver.routes["/huge"] = huge
    target = urlguard.check(receiver.url("/huge"), LOOPBACK)
    response = await outbound.send(post(), target, allow=LOOPBACK, max_body=1000)
    assert response.status == 500 and len(response.body) == 1000


async def test_a_silent_peer_times_out_within_the_limit(receiver: Receiver) -> None:
    async def silent(_: Received) -> Answer:
        await asyncio.sleep(30)
        return 200, {}, b""

    receiver.routes["/silent"] = silent
    target = urlguard.check(receiver.url("/silent"), LOOPBACK)
    started = time.monotonic()
    with pytest.raises(MeshError) as caught:
        await outbound.send(post(), target, allow=LOOPBACK, seconds=0.5)
    assert caught.value.reason is Reason.UNAVAILABLE
    # Ended by the limit, not by the peer (which would answer after 30 s).
    assert time.monotonic() - started < 25


async def test_a_closed_port_is_unavailable() -> None:
    target = urlguard.check(f"http://127.0.0.1:{free_port()}/", LOOPBACK)
    with pytest.raises(MeshError) as caught:
        await outbound.send(post(), target, allow=LOOPBACK, seconds=2)
    assert caught.value.reason is Reason.UNAVAILABLE
