"""Loopback OTLP receivers for what the services export: OTLP/HTTP (protobuf) and OTLP/gRPC,
both decoded with `opentelemetry-proto` into plain spans.

Used by the tracing tests and by `bench/tracing.py` (there as a sink that only counts).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

# OTLP's Span.SpanKind and Status.StatusCode values.
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
STATUS_ERROR = 2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: int
    attributes: dict[str, Any]
    status: int
    start: int
    end: int
    events: tuple[str, ...]

    def values(self) -> Iterator[str]:
        """Every string the span carries (its name, attributes, events), for secret hunts."""
        yield self.name
        for key, value in self.attributes.items():
            yield key
            yield str(value)
        yield from self.events


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(_span(service, span))
    return spans


def _span(service: str, span: trace_pb2.Span) -> ReceivedSpan:
    events = []
    for event in span.events:
        events.append(event.name)
        events.extend(f"{kv.key}={_value(kv.value)}" for kv in event.attributes)
    return ReceivedSpan(
        service=service,
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        kind=span.kind,
        attributes={kv.key: _value(kv.value) for kv in span.attributes},
        status=span.status.code,
        start=span.start_time_unix_nano,
        end=span.end_time_unix_nano,
        events=tuple(events),
    )


class _Store:
    def __init__(self, keep: bool) -> None:
        self._keep = keep
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.count = 0
        self.requests = 0

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.requests += 1
            self.count += len(spans)
            if self._keep:
                self._spans.extend(spans)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)


class _Receiver:
    def __init__(self, keep: bool) -> None:
        self.store = _Store(keep)

    def spans(self) -> list[ReceivedSpan]:
        return self.store.spans()

    @property
    def received(self) -> int:
        return self.store.count

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], Any], within: float = 60.0
    ) -> list[ReceivedSpan]:
        """The spans received, once `found(spans)` is true (the exporters batch)."""
        deadline = time.monotonic() + within
        while True:
            spans = self.spans()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"not received within {within} s; {len(spans)} spans")
            time.sleep(0.1)


class HttpReceiver(_Receiver):
    """POST /v1/traces on 127.0.0.1, as an OpenTelemetry collector's OTLP/HTTP receiver."""

    def __init__(self, keep: bool = True) -> None:
        super().__init__(keep)
        store = self.store

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                store.add(decode(request))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcReceiver(_Receiver):
    """The OTLP/gRPC TraceService on 127.0.0.1."""

    def __init__(self, keep: bool = True) -> None:
        super().__init__(keep)
        store = self.store

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(  # noqa: N802 - the proto's name
                self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
            ) -> trace_service_pb2.ExportTraceServiceResponse:
                store.add(decode(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            Service(), self._server
        )
        self._port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> GrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=1)
