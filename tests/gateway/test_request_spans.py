"""The gateway's request spans (services.gateway.metrics._RequestSpans) against the official
ASGI instrumentation they replace: the same name, kind, parent, attributes and status for the
same requests, signatures redacted, no span for health checks."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mesh import tracing
from services.gateway.metrics import span_details, tracing_middleware

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def download(request: Request) -> Response:
    return Response(b"x" * 10, media_type="application/octet-stream")


async def broken(request: Request) -> Response:
    return Response(b"no", status_code=503)


async def healthz(request: Request) -> Response:
    return Response(b"ok")


ROUTES = [
    Route("/api/jobs/{job_id}/files/{index}", download, methods=["GET"]),
    Route("/api/broken", broken, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
]


def _official(provider: TracerProvider) -> Middleware:
    """The ASGI instrumentation as the gateway configured it before."""
    return Middleware(
        OpenTelemetryMiddleware,
        excluded_urls="healthz",
        default_span_details=span_details(ROUTES),
        server_request_hook=lambda span, scope: tracing._redact_span_urls(span),
        exclude_spans=["receive", "send"],
        tracer_provider=provider,
    )


async def _spans(middleware: Any, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    app = Starlette(routes=ROUTES, middleware=[middleware])
    requests = [
        ("GET", "/api/jobs/j1/files/0", b"expires=17&signature=c2VjcmV0", [(b"x", b"1")]),
        ("POST", "/api/broken", b"", [(b"traceparent", TRACEPARENT.encode())]),
        ("GET", "/healthz", b"", []),
    ]
    for method, path, query, extra in requests:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"gw.test:8080"), (b"user-agent", b"curl/8"), *extra],
            "client": ("10.0.0.7", 50123),
            "server": ("10.0.0.1", 8080),
        }
        events = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive(events: Any = events) -> dict[str, Any]:
            return next(events)

        async def send(message: Any) -> None:
            pass

        await app(scope, receive, send)
    return list(exporter.get_finished_spans())


def _exporting() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_request_spans_say_what_the_asgi_instrumentation_said() -> None:
    provider, exporter = _exporting()
    ours = await _spans(tracing_middleware(ROUTES, provider), exporter)
    provider, exporter = _exporting()
    theirs = await _spans(_official(provider), exporter)

    def described(span: ReadableSpan) -> tuple[Any, ...]:
        parent = span.parent
        return (
            span.name,
            span.kind,
            parent.span_id if parent is not None else None,
            span.context.trace_id if parent is not None else None,
            dict(span.attributes or {}),
            span.status.status_code,
        )

    assert [described(s) for s in ours] == [described(s) for s in theirs]
    assert [s.name for s in ours] == ["GET /api/jobs/{job_id}/files/{index}", "POST /api/broken"]
    download_span, broken_span = ours
    assert "signature=REDACTED" in str(dict(download_span.attributes or {})["http.url"])
    assert all("c2VjcmV0" not in str(v) for s in ours for v in (s.attributes or {}).values())
    assert broken_span.parent is not None and broken_span.parent.span_id == 0xB7AD6B7169203331
    assert dict(broken_span.attributes or {})["http.status_code"] == 503
