"""What a client may hold of the gateway: how slowly it may send, and how many uploads it may
have open at once.

- Headers: a request's headers must be complete `header_seconds` after its first byte (or
  after the connection opened); otherwise the connection is answered 408 and closed
  (`protocol_class`: uvicorn reads headers before any ASGI code runs).
- Bodies: every `POST` body may pause at most `body_idle_seconds`, and must arrive at
  `min_bytes_per_second` at least, measured over each `rate_window_seconds`; otherwise 408
  (`UploadGuard`). The upload in progress is then aborted like any failed one: what it stored
  is removed.
- Wrong keys: a client (by address: behind a proxy trusted with FORWARDED_ALLOW_IPS, the one
  its X-Forwarded-For names) whose requests with a key were answered 401 `max_auth_failures`
  times within `auth_window_seconds` gets 429 for every request until the oldest of those
  failures leaves the window (`KeyThrottle`): 1,000 wrong keys at 966 req/s were once all
  answered. Every request is refused meanwhile, a right key too, or the answers would tell a
  guess that hit.
- Concurrency: at most `max_uploads_per_tenant` `POST` bodies per API key at once (429 over
  it) and `max_uploads` in all (503), answered before reading the body.

Without these, 5,000 sockets trickling bytes were all held, each with an upload stream open
to the orchestrator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mesh.errors import MeshError, Reason
from services.gateway.auth import key_in, tenant_of

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
)


@dataclass(frozen=True)
class GuardLimits:
    header_seconds: float = 30.0
    body_idle_seconds: float = 60.0
    min_bytes_per_second: float = 16 * 1024
    rate_window_seconds: float = 30.0
    max_uploads: int = 256
    max_uploads_per_tenant: int = 16
    max_auth_failures: int = 20
    auth_window_seconds: float = 60.0


def protocol_class(header_seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            body = MeshError(
                Reason.REQUEST_TIMEOUT,
                f"The request's headers did not arrive within {header_seconds:g} s.",
            ).to_http_body()
            content = json.dumps(body, separators=(",", ":")).encode()
            self.transport.write(
                _TIMEOUT_RESPONSE + f"content-length: {len(content)}\r\n\r\n".encode() + content
            )
            self.transport.close()

    return GuardedProtocol


class UploadGuard:
    """ASGI middleware: the body limits and the concurrent upload caps (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: GuardLimits,
        keys: dict[str, str],
        render: Callable[[MeshError], Response],
    ) -> None:
        self._app = app
        self._limits = limits
        self._keys = keys
        self._render = render
        self._open = 0
        self._per_tenant: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        tenant = tenant_of(key_in(Headers(scope=scope)), self._keys)
        refusal = self._refusal(tenant)
        if refusal is not None:
            response = self._render(refusal)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        self._open += 1
        if tenant is not None:
            self._per_tenant[tenant] += 1
        try:
            await self._app(scope, _Paced(receive, self._limits), send)
        finally:
            self._open -= 1
            if tenant is not None:
                self._per_tenant[tenant] -= 1
                if not self._per_tenant[tenant]:
                    del self._per_tenant[tenant]

    def _refusal(self, tenant: str | None) -> MeshError | None:
        limits = self._limits
        if tenant is not None and self._per_tenant[tenant] >= limits.max_uploads_per_tenant:
            return MeshError(
                Reason.RATE_LIMITED,
                f"This key has {limits.max_uploads_per_tenant} uploads in progress, the most "
                "allowed at once; retry when one has finished.",
                limit="uploads_per_tenant",
                max=limits.max_uploads_per_tenant,
            )
        if self._open >= limits.max_uploads:
            return MeshError(
                Reason.UNAVAILABLE,
                "The gateway has as many uploads in progress as it takes; retry later.",
                limit="uploads",
            )
        return None


class KeyThrottle:
    """ASGI middleware: refuses clients that sent too many wrong keys (module docstring)."""

    # Clients remembered at most; past it, those with no failure in the window are forgotten.
    MAX_CLIENTS = 10_000

    def __init__(
        self, app: ASGIApp, limits: GuardLimits, render: Callable[[MeshError], Response]
    ) -> None:
        self._app = app
        self._limits = limits
        self._render = render
        self._failures: dict[str, deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else ""
        now = time.monotonic()
        failures = self._recent(client, now)
        if failures is not None and len(failures) >= self._limits.max_auth_failures:
            wait = max(1, int(failures[0] + self._limits.auth_window_seconds - now) + 1)
            refusal = MeshError(
                Reason.RATE_LIMITED,
                "Too many requests with a wrong API key from this address; retry later.",
                limit="auth_failures",
            )
            response = self._render(refusal)
            response.headers["Retry-After"] = str(wait)
            await response(scope, receive, send)
            return

        if not key_in(Headers(scope=scope)):
            await self._app(scope, receive, send)  # no key at all is no guess
            return

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self._fail(client)
            await send(message)

        await self._app(scope, receive, watched)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self._limits.auth_window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def _fail(self, client: str) -> None:
        now = time.monotonic()
        if client not in self._failures and len(self._failures) >= self.MAX_CLIENTS:
            for known in list(self._failures):
                self._recent(known, now)
        failures = self._failures.setdefault(client, deque())
        failures.append(now)
        while len(failures) > self._limits.max_auth_failures:
            failures.popleft()


class _Paced:
    """`receive` with the idle and rate limits of a request body."""

    def __init__(self, receive: Receive, limits: GuardLimits) -> None:
        self._receive = receive
        self._limits = limits
        self._window_start = time.monotonic()
        self._window_bytes = 0
        self._done = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        limits = self._limits
        try:
            async with asyncio.timeout(limits.body_idle_seconds):
                message = await self._receive()
        except TimeoutError:
            raise MeshError(
                Reason.REQUEST_TIMEOUT,
                f"The upload paused for more than {limits.body_idle_seconds:g} s.",
                limit="body_idle_seconds",
            ) from None
        if message["type"] != "http.request":
            return message
        self._window_bytes += len(message.get("body", b""))
        if not message.get("more_body", False):
            self._done = True
            return message
        self._check_rate()
        return message

    def _check_rate(self) -> None:
        limits = self._limits
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed < limits.rate_window_seconds:
            return
        if self._window_bytes / elapsed < limits.min_bytes_per_second:
            raise MeshError(
                Reason.REQUEST_TIMEOUT,
                f"The upload arrived at less than {limits.min_bytes_per_second:g} bytes per "
                f"second over {limits.rate_window_seconds:g} s.",
                limit="min_bytes_per_second",
            )
        self._window_start, self._window_bytes = now, 0


def uvicorn_options(
    limits: GuardLimits, max_connections: int, forwarded_allow_ips: str = ""
) -> dict[str, Any]:
    """uvicorn's own limits, the guarded protocol, and the proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed (none by default: the peer is the client). The wrong-key
    throttle and download links see the client address and scheme these give."""
    options: dict[str, Any] = {
        "http": protocol_class(limits.header_seconds),
        "timeout_keep_alive": 5,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    if max_connections:
        options["limit_concurrency"] = max_connections
    return options
