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

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
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


class _RequestSpans(OpenTelemetryMiddleware):
    """The ASGI instrumentation, each request from an empty context: uvicorn starts a
    pipelined request's task from inside the previous request's last `send`, whose span would
    otherwise become the new request's parent (one trace for many jobs)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with tracing.detached():
            await super().__call__(scope, receive, send)


def tracing_middleware(
    routes: Sequence[BaseRoute], tracer_provider: Any = None
) -> Middleware | None:
    """The OpenTelemetry ASGI middleware when tracing is on (mesh.tracing.configure), else
    None: no span, no cost. (`tracer_provider`: another than the global one, for bench.tracing;
    the middleware is then made whether tracing is on or not.) No span per `http.receive` or
    `http.send` event: a multipart upload and a streamed download are many of them."""
    if tracer_provider is None and not tracing.enabled():
        return None
    return Middleware(
        _RequestSpans,
        excluded_urls="healthz",
        default_span_details=span_details(routes),
        server_request_hook=tracing.redact_server_span,
        exclude_spans=["receive", "send"],
        tracer_provider=tracer_provider,
    )
