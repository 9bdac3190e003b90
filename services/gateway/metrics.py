"""What the gateway tells operators about each request: metrics labelled by the route's template
(never the raw path, so ids and bogus URLs cannot blow up the label set), and, with tracing on,
the request's span, root of the job's trace.

The metrics are served on their own port (`METRICS_PORT`, mesh.telemetry), never on the public
one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh import telemetry, tracing


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        route = route_template(self._routes, scope)
        received = telemetry.HTTP_RECEIVED_BYTES.labels(route)
        sent = telemetry.HTTP_SENT_BYTES.labels(route)

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received.inc(len(message.get("body", b"")))
            return message

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                telemetry.HTTP_SECONDS.labels(route, scope["method"]).observe(
                    time.perf_counter() - started
                )
            elif message["type"] == "http.response.body":
                sent.inc(len(message.get("body", b"")))
            await send(message)

        try:
            await self._app(scope, counted, observed)
        finally:
            telemetry.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()


def span_details(routes: Sequence[BaseRoute]) -> Callable[[Scope], tuple[str, dict[str, Any]]]:
    """Names a request's span by its route template (`POST /api/jobs/{job_id}`)."""

    def details(scope: Scope) -> tuple[str, dict[str, Any]]:
        route = route_template(routes, scope)
        return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}

    return details


# Requests that get no span: probes would be most of the spans otherwise.
UNTRACED_PATHS = frozenset({"/healthz"})


class _RequestSpans:
    """The request's span, root of the job's trace (or the continuation of a `traceparent` the
    request carries): SERVER, named by route template, with the HTTP attributes the ASGI
    instrumentation gives (its default conventions; the URL without signatures, mesh.tracing)
    and an ERROR status for a 5xx answer. In place of that instrumentation, which spent 260-370
    us per sampled request (`bench/tracing.py`'s parts) on semantic-convention variants, its
    metrics and a wrapper per message. Each request starts from an empty context: uvicorn
    starts a pipelined request's task from inside the previous request's last `send`, whose
    span would otherwise become the new request's parent (one trace for many jobs)."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[BaseRoute], tracer_provider: Any = None
    ) -> None:
        self._app = app
        self._details = span_details(routes)
        self._tracer = trace.get_tracer(tracing.TRACER_NAME, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self._app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        name, attributes = self._details(scope)
        # Given at the start (one attribute set built once; setting them after costs a lock and
        # a check per attribute): built for an unsampled request too, a few microseconds.
        attributes.update(_request_attributes(scope, headers))
        with (
            tracing.detached(),
            self._tracer.start_as_current_span(
                name,
                context=propagate.extract(headers),
                kind=SpanKind.SERVER,
                attributes=attributes,
            ) as span,
        ):
            if not span.is_recording():
                await self._app(scope, receive, send)
                return

            async def answered(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self._app(scope, receive, answered)


def _request_attributes(scope: Scope, headers: dict[str, str]) -> dict[str, Any]:
    """The ASGI instrumentation's request attributes (its default, the old conventions)."""
    scheme = scope.get("scheme", "http")
    server = scope.get("server") or ("", None)
    address = f"{server[0]}:{server[1]}" if server[1] is not None else server[0]
    host = headers.get("host") or address
    path = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    attributes: dict[str, Any] = {
        "http.scheme": scheme,
        "http.host": address,
        "http.flavor": scope.get("http_version", "1.1"),
        "http.target": path,
        "http.url": tracing.redact(f"{scheme}://{host}{path}" + (f"?{query}" if query else "")),
        "http.method": scope["method"],
        "http.server_name": host,
    }
    if server[1] is not None:
        attributes["net.host.port"] = server[1]
    if "user-agent" in headers:
        attributes["http.user_agent"] = headers["user-agent"]
    client = scope.get("client")
    if client:
        attributes["net.peer.ip"], attributes["net.peer.port"] = client[0], client[1]
    return attributes


def tracing_middleware(
    routes: Sequence[BaseRoute], tracer_provider: Any = None
) -> Middleware | None:
    """The request spans (`_RequestSpans`) when tracing is on (mesh.tracing.configure), else
    None: no span, no cost. (`tracer_provider`: another than the global one, for bench.tracing;
    the middleware is then made whether tracing is on or not.)"""
    if tracer_provider is None and not tracing.enabled():
        return None
    return Middleware(_RequestSpans, routes=routes, tracer_provider=tracer_provider)
