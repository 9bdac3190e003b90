"""Issue 13 item 8: the wrong-key throttle behind an ingress. Every client reaches the gateway
from the ingress's address; with that address trusted (FORWARDED_ALLOW_IPS) the throttle keys
on the client its X-Forwarded-For names, while an untrusted peer's X-Forwarded-For is ignored
(or anyone could pick a fresh address per guess). A real uvicorn gateway on 127.0.0.1: the
test's connections come from 127.0.0.1, the 'ingress'."""

from __future__ import annotations

import httpx
import pytest

from services.gateway.guard import GuardLimits
from services.gateway.settings import Settings as GatewaySettings
from services.gateway.settings import parse_forwarded_allow_ips
from tests.resilience.conftest import KEY, TENANT, Stack, gateway

WITHIN = 60.0
LIMIT = 3
ALICE = "203.0.113.1"
BOB = "203.0.113.2"


def settings(stack: Stack, forwarded_allow_ips: str) -> GatewaySettings:
    return GatewaySettings(
        orchestrator=stack.grpc_address,
        api_keys={KEY: TENANT},
        guard=GuardLimits(max_auth_failures=LIMIT, auth_window_seconds=3600),
        forwarded_allow_ips=forwarded_allow_ips,
    )


async def status(http: httpx.AsyncClient, key: str, forwarded_for: str) -> int:
    response = await http.get(
        "/api/jobs", headers={"x-api-key": key, "x-forwarded-for": forwarded_for}
    )
    return response.status_code


async def test_clients_behind_a_trusted_proxy_are_throttled_each_on_their_own(
    stack: Stack,
) -> None:
    async with (
        gateway(settings(stack, "127.0.0.1")) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=WITHIN) as http,
    ):
        alice = [await status(http, f"guess-{n}", ALICE) for n in range(LIMIT + 1)]
        # A client that sends its own X-Forwarded-For through the ingress, which appends the
        # address it saw: the rightmost untrusted entry counts, so Alice stays Alice.
        spoofing = await status(http, KEY, f"198.51.100.7, {ALICE}")
        bob_wrong = await status(http, "guess-bob", BOB)
        bob_right = await status(http, KEY, BOB)
    assert alice == [401] * LIMIT + [429]
    assert spoofing == 429
    assert bob_wrong == 401
    assert bob_right == 200


async def test_an_untrusted_peers_forwarded_for_is_ignored(stack: Stack) -> None:
    async with (
        gateway(settings(stack, "")) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=WITHIN) as http,
    ):
        # A fresh X-Forwarded-For per guess does not make a fresh client.
        guesses = [await status(http, f"guess-{n}", f"203.0.113.{n}") for n in range(LIMIT + 1)]
        other = await status(http, KEY, BOB)
    assert guesses == [401] * LIMIT + [429]
    assert other == 429


def test_forwarded_allow_ips_takes_addresses_networks_or_any() -> None:
    assert parse_forwarded_allow_ips(" 10.0.0.0/8, ::1 ") == "10.0.0.0/8,::1"
    assert parse_forwarded_allow_ips("*") == "*"
    assert parse_forwarded_allow_ips("") == ""
    for bad in ("ingress.local", "10.1.2.3/8"):
        with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS"):
            parse_forwarded_allow_ips(bad)
