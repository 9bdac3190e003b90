"""When the orchestrator cannot be reached the gateway answers 503 with Retry-After, fast."""

from __future__ import annotations

import time

import httpx

from launcher.nats import free_port
from services.gateway.app import create_app
from services.gateway.settings import Settings

KEY = "k-0123456789"


async def test_orchestrator_down_is_503_with_retry_after() -> None:
    settings = Settings(
        orchestrator=f"127.0.0.1:{free_port()}", api_keys={KEY: "acme"}, rpc_timeout_seconds=2
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            started = time.monotonic()
            listed = await http.get("/api/jobs", headers={"x-api-key": KEY})
            created = await http.post(
                "/api/jobs",
                headers={"x-api-key": KEY},
                data={"format": "png"},
                files=[("files", ("a.jpg", b"\xff\xd8\xff" + bytes(1000), "image/jpeg"))],
            )
            health = await http.get("/healthz")
            elapsed = time.monotonic() - started
    for response in (listed, created, health):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
    assert listed.json()["code"] == created.json()["code"] == "UNAVAILABLE"
    assert "127.0.0.1" not in listed.text
    # Bounded by the RPC timeouts, not hanging on the missing orchestrator.
    assert elapsed < 60
