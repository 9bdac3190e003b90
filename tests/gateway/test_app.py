"""The real gateway app on the HTTP edge, where no orchestrator is needed: CORS for browsers on
allowed origins, 405 with `Allow`, 401 with `WWW-Authenticate`, and signed download links
refused before anything is read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from launcher.nats import free_port
from mesh.links import LinkSigner
from services.gateway.app import create_app
from services.gateway.settings import Settings, parse_origins

KEY = "k-0123456789"
APP_ORIGIN = "https://app.example"
SIGNER = LinkSigner(("gateway-test-link-key-0123456789",), lifetime_seconds=60)
JOB = "5a0c6f0e-8d1b-4c36-9e0f-2f1d7b9c1a11"


async def _client(cors: tuple[str, ...] = ()) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        orchestrator=f"127.0.0.1:{free_port()}",
        api_keys={KEY: "acme"},
        rpc_timeout_seconds=2,
        links=SIGNER,
        cors_origins=cors,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client():
        yield client


@pytest.fixture
async def browser_http() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client((APP_ORIGIN,)):
        yield client


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/jobs", "GET, HEAD, POST"),
        ("PATCH", f"/api/jobs/{JOB}", "DELETE, GET, HEAD"),
        ("POST", f"/api/jobs/{JOB}/files/0", "GET, HEAD"),
        ("OPTIONS", "/api/convert", "POST"),
    ],
)
async def test_a_wrong_method_is_405_with_allow_listing_every_method(
    http: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await http.request(method, path, headers={"x-api-key": KEY})
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    body = response.json()
    assert body["code"] == "METHOD_NOT_ALLOWED"
    assert method in body["error"] and body["detail"] == ""
    assert body["meta"]["allowed"] == allowed.split(", ")


async def test_a_missing_key_is_401_with_www_authenticate_bearer(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "UNAUTHENTICATED"


async def test_a_preflight_from_an_allowed_origin_is_answered(
    browser_http: httpx.AsyncClient,
) -> None:
    response = await browser_http.options(
        "/api/jobs",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "idempotency-key", "content-type"} <= set(allowed.split(", "))


async def test_a_preflight_from_another_origin_gets_no_cors_grant(
    browser_http: httpx.AsyncClient,
) -> None:
    response = await browser_http.options(
        "/api/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_answers_to_an_allowed_origin_expose_the_headers_clients_read(
    browser_http: httpx.AsyncClient,
) -> None:
    response = await browser_http.get("/api/jobs", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = response.headers["access-control-expose-headers"].lower()
    assert {"content-disposition", "www-authenticate", "idempotent-replayed"} <= set(
        exposed.split(", ")
    )


async def test_without_cors_origins_no_origin_is_granted(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/jobs", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    preflight = await http.options(
        "/api/jobs", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 405


def _signed(path: str, now: float | None = None) -> tuple[str, dict[str, str]]:
    parts = urlsplit(SIGNER.sign("acme", path, now))
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_a_tampered_link_is_403_link_invalid(http: httpx.AsyncClient) -> None:
    path, query = _signed(f"/api/jobs/{JOB}/files/0")
    response = await http.get(path.replace("files/0", "files/1"), params=query)
    assert response.status_code == 403
    assert response.json()["code"] == "LINK_INVALID"
    assert "signature does not match" in response.json()["error"]


async def test_an_expired_link_is_403_link_expired(http: httpx.AsyncClient) -> None:
    path, query = _signed(f"/api/jobs/{JOB}/archive", now=1_000_000_000)
    response = await http.get(path, params=query)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "LINK_EXPIRED"
    assert body["meta"]["expiredAt"].startswith("2001-09-09")


async def test_a_download_without_key_or_signature_is_401(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/jobs/{JOB}/files/0")
    assert response.status_code == 401


def test_cors_origins_are_checked_when_read() -> None:
    assert parse_origins(" https://a.example/, http://127.0.0.1:3000 ") == (
        "https://a.example",
        "http://127.0.0.1:3000",
    )
    assert parse_origins("*") == ("*",)
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        parse_origins("https://a.example/app")
