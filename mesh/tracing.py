"""Tracing with OpenTelemetry: one trace per job, across every hop of the mesh.

The gateway's request span (ASGI) is the root; its gRPC calls carry the context in their
metadata (`metadata()`, read by the orchestrator's grpc aio server instrumentation), NATS
messages in their headers (W3C `traceparent`, injected and extracted here): a task carries its
dispatch's context to the worker, a result the worker task's back to the orchestrator, a
callback event the result's to its delivery (whose HTTP request the httpx instrumentation
traces, as it does `sourceUrl` fetches). A sandboxed call gets the context with its arguments;
the spans it records there come back with its result and are exported by the worker, so a
sandbox process never opens a connection.

The exporter comes from the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`, `console`,
`none`; several comma-separated), else OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, over `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
the default, or `grpc`). The SDK reads the rest itself (headers, timeout, certificates,
compression, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`). With none of them
set nothing is installed: no provider, no instrumentation, and every helper here returns at once.

Spans carry ids, formats, sizes and outcomes: never file content, keys, callback secrets or
signed-link signatures (the URLs on HTTP spans lose their signatures; see `redact`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _encode_events,
    _encode_links,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from mesh.settings import Env

if TYPE_CHECKING:
    from mesh.bus.tasks import TaskSpec

log = logging.getLogger(__name__)

TRACER_NAME = "convertmesh"
EXPORTERS = ("otlp", "console")
PROTOCOLS = ("http/protobuf", "grpc")
# The specification's defaults, passed explicitly: the exporters would read an empty
# OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a ConfigMap's) as the endpoint itself.
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
# Query parameters whose values never reach a span (signed download links).
# Presigned S3 and GCS URLs (a sourceUrl) carry theirs as X-Amz-* and X-Goog-* parameters.
SECRET_PARAMETERS = frozenset(
    {
        "signature",
        "sig",
        "key",
        "api_key",
        "token",
        "access_token",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
REDACTED = "REDACTED"

Attributes = Mapping[str, str | int | float | bool]

# The provider's own tracer once one is installed (the API's proxy tracer adds a delegation
# per span); the proxy until then.
_tracer: trace.Tracer = trace.get_tracer(TRACER_NAME)
_enabled = False
# The processors of this process's provider: spans recorded in a sandbox are handed to them.
_processors: list[SpanProcessor] = []
_resource: Resource | None = None


@dataclass(frozen=True)
class TracingSettings:
    exporters: tuple[str, ...] = ()
    protocol: str = "http/protobuf"
    # The traces endpoint as the exporter takes it (a full URL with /v1/traces for HTTP).
    endpoint: str = "http://localhost:4318/v1/traces"

    @property
    def enabled(self) -> bool:
        return bool(self.exporters)

    @classmethod
    def read(cls, env: Env) -> TracingSettings:
        signal_endpoint = env.optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base_endpoint = env.optional("OTEL_EXPORTER_OTLP_ENDPOINT")
        protocol = env.optional("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.text(
            "OTEL_EXPORTER_OTLP_PROTOCOL", cls.protocol
        )
        if protocol not in PROTOCOLS:
            env.problem(
                "OTEL_EXPORTER_OTLP_PROTOCOL", f"must be one of {PROTOCOLS}, got {protocol!r}"
            )
            protocol = cls.protocol
        default = "otlp" if signal_endpoint or base_endpoint else "none"
        chosen = env.text("OTEL_TRACES_EXPORTER", default)
        names = tuple(dict.fromkeys(n.strip() for n in chosen.split(",") if n.strip()))
        unknown = [n for n in names if n not in (*EXPORTERS, "none")]
        if unknown:
            env.problem("OTEL_TRACES_EXPORTER", f"must be otlp, console or none, got {chosen!r}")
        exporters = tuple(n for n in names if n in EXPORTERS)
        if env.flag("OTEL_SDK_DISABLED"):
            exporters = ()
        # The base URL of the spec: HTTP appends the signal's path, gRPC takes it as is.
        base = base_endpoint or DEFAULT_ENDPOINTS[protocol]
        endpoint = signal_endpoint or (
            base.rstrip("/") + "/v1/traces" if protocol == "http/protobuf" else base
        )
        return cls(exporters, protocol, endpoint)


def configure(service: str, settings: TracingSettings) -> None:
    """Installs the SDK for `service` with the exporters and the instrumentations (gRPC aio
    server, httpx); does nothing when no exporter is set. Call before any gRPC
    channel, server or httpx client is made."""
    global _enabled, _resource, _tracer  # noqa: PLW0603 - once per process, at start
    if not settings.enabled or _enabled:
        return
    created = Resource.create({"service.name": service, "service.namespace": "convertmesh"})
    _resource = _Resource(created.attributes, created.schema_url)
    provider = TracerProvider(resource=_resource)
    for name in settings.exporters:
        processor = BatchSpanProcessor(_exporter(name, settings))
        provider.add_span_processor(processor)
        _processors.append(processor)
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer(TRACER_NAME)
    _instrument()
    _enabled = True
    log.info(
        "tracing enabled",
        extra={"exporters": ",".join(settings.exporters), "protocol": settings.protocol},
    )


class _Resource(Resource):
    """The process's resource, hashed once: the OTLP encoder groups each span by its resource in
    a dict, and `Resource.__hash__` serialises every attribute to JSON on each call (5 us of the
    27 us it took to encode a span, measured over 512-span batches)."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


_SPAN_FLAGS = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def encode_spans(sdk_spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request for `spans`, equal to the SDK encoder's (`encode_spans` of
    opentelemetry-exporter-otlp-proto-common), built in place: each span, attribute and value
    added to the request's own repeated fields, not made as a message of its own and copied in
    (38.2 -> 13.4 us per span of 7 attributes, 512-span batches). Values other than str, bool,
    int and float, events and links go through the SDK's own helpers."""
    request = ExportTraceServiceRequest()
    by_resource: dict[Resource, tuple[Any, dict[Any, Any]]] = {}
    for span in sdk_spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        grouped = by_resource.get(resource)
        if grouped is None:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(_encode_attributes(resource.attributes))
            if resource.schema_url:
                resource_spans.schema_url = resource.schema_url
            grouped = by_resource[resource] = (resource_spans, {})
        scope_spans = grouped[1].get(scope)
        if scope_spans is None:
            scope_spans = grouped[0].scope_spans.add()
            scope_spans.scope.CopyFrom(_encode_instrumentation_scope(scope))  # type: ignore[arg-type]
            if scope is not None and scope.schema_url:
                scope_spans.schema_url = scope.schema_url
            grouped[1][scope] = scope_spans
        _encode_span_into(scope_spans.spans.add(), span)
    return request


def _encode_span_into(out: Any, span: ReadableSpan) -> None:
    context = span.get_span_context()
    assert context is not None, "a finished span has its context"
    out.trace_id = context.trace_id.to_bytes(16, "big")
    out.span_id = context.span_id.to_bytes(8, "big")
    if context.trace_state:
        out.trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    parent = span.parent
    flags = int(_SPAN_FLAGS)
    if parent is not None:
        out.parent_span_id = parent.span_id.to_bytes(8, "big")
        if parent.is_remote:
            flags |= _REMOTE_PARENT
    out.flags = flags
    out.name = span.name
    out.kind = span.kind.value + 1  # OTLP's SpanKind counts from UNSPECIFIED = 0
    out.start_time_unix_nano = span.start_time or 0
    out.end_time_unix_nano = span.end_time or 0
    for key, value in (span.attributes or {}).items():
        kind = type(value)
        if kind is str:
            added = out.attributes.add()
            added.key = key
            added.value.string_value = value
        elif kind is bool:
            added = out.attributes.add()
            added.key = key
            added.value.bool_value = value
        elif kind is int:
            added = out.attributes.add()
            added.key = key
            added.value.int_value = value
        elif kind is float:
            added = out.attributes.add()
            added.key = key
            added.value.double_value = value
        else:  # None, bytes, sequences, mappings; a value it cannot encode is logged, left out
            out.attributes.extend(_encode_attributes({key: value}))
    if span.events:
        out.events.extend(_encode_events(span.events) or ())
    if span.links:
        out.links.extend(_encode_links(span.links) or ())
    status = span.status
    out.status.SetInParent()
    if status.status_code.value:
        out.status.code = status.status_code.value
    if status.description:
        out.status.message = status.description
    if span.dropped_attributes:
        out.dropped_attributes_count = span.dropped_attributes
    if span.dropped_events:
        out.dropped_events_count = span.dropped_events
    if span.dropped_links:
        out.dropped_links_count = span.dropped_links


class _GrpcExporter(GrpcExporter):
    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode_spans(data)


def _exporter(name: str, settings: TracingSettings) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    if settings.protocol == "grpc":
        return _GrpcExporter(endpoint=settings.endpoint)
    # The OTLP/HTTP exporter's `export` calls its module's encoder by name: the one hook there is.
    http_trace_exporter.encode_spans = encode_spans  # type: ignore[attr-defined]
    return HttpExporter(endpoint=settings.endpoint)


# RPCs that get no span (and so no interceptor work beyond this check): health checks (probes,
# the gateway's /healthz) would be most of the spans otherwise; reflection is for tools; a
# WatchJob is a wait for the job's end, not work (its time is the request span's, the work is
# under CreateJob's dispatch), and each is two spans and the interceptors' per-call work.
UNTRACED_RPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
UNTRACED_RPCS = frozenset({"/mesh.jobs.v1.JobService/WatchJob"})


def traced_rpc(details: Any) -> bool:
    """The gRPC instrumentations' filter: True for a call that gets a span. One string test
    per call (the instrumentation's own filters re-derive the method name through isinstance
    checks and os.path for each condition, on every call)."""
    method = details.method
    if isinstance(method, bytes):  # grpc aio hands the client its method as bytes
        method = method.decode()
    return method not in UNTRACED_RPCS and not method.startswith(UNTRACED_RPC_PREFIXES)


# RPCs whose handlers start no span of their own and send nothing on (no task, no event): when
# the caller's span is not sampled, the server span of one could only be a non-recording span
# nobody reads, so the server's instrumentation is skipped for it (in an unsampled thumbnail
# request, UploadBlob and ReadOutput are most of the server side's per-call cost, measured by
# `bench/tracing.py`'s last table). A call with no `traceparent` still gets its span: it is the
# root, and the sampler decides.
LEAF_RPCS = frozenset(
    {"/mesh.jobs.v1.JobService/UploadBlob", "/mesh.jobs.v1.JobService/ReadOutput"}
)


def traced_server_rpc(details: Any) -> bool:
    """The server instrumentation's filter: `traced_rpc`, and a leaf RPC (LEAF_RPCS) only when
    its caller's `traceparent` does not say "not sampled"."""
    if not traced_rpc(details):
        return False
    return details.method not in LEAF_RPCS or not _unsampled_caller(details.invocation_metadata)


def _unsampled_caller(metadata: Any) -> bool:
    """True when the call's W3C `traceparent` is well formed and its sampled flag is off."""
    for key, value in metadata or ():
        if key == "traceparent":
            parts = str(value).split("-")
            if len(parts) < 4 or len(parts[3]) < 2:
                return False
            try:
                return not int(parts[3][:2], 16) & 1
            except ValueError:
                return False
    return False


def _instrument() -> None:
    # No client instrumentation: the gateway, the mesh's one gRPC client, puts the context in
    # each call's metadata itself (`metadata()`); the orchestrator's server span is the call's.
    GrpcAioInstrumentorServer(filter_=traced_server_rpc).instrument()  # type: ignore[no-untyped-call]
    HTTPXClientInstrumentor().instrument(
        request_hook=_redact_httpx, async_request_hook=_redact_httpx_async
    )


def enabled() -> bool:
    return _enabled


def shutdown() -> None:
    """Exports what is still queued (the provider also does this at exit)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if _enabled and stop is not None:
        stop()


# What span() and stage() return with tracing off: one shared, stateless context manager.
_NO_SPAN: contextlib.AbstractContextManager[Span] = contextlib.nullcontext(INVALID_SPAN)


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    parent: Context | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A span around the block, the current one inside it; an exception ends it with an error
    status (recorded as an event). With tracing off, a non-recording span and no work."""
    if not _enabled:
        return _NO_SPAN
    if _recording is not None:
        return _recorded_span(name, kind, attributes, parent)
    return _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Runs the block in an empty context: what starts there starts a trace of its own (or
    continues only what it extracts), whatever context the task inherited."""
    token = otel_context.attach(Context())
    try:
        yield
    finally:
        otel_context.detach(token)


def set_attributes(target: Span, attributes: Attributes) -> None:
    if target.is_recording():
        target.set_attributes(attributes)


def annotate(attributes: Attributes) -> None:
    """Adds attributes to the current span."""
    if _enabled:
        set_attributes(trace.get_current_span(), attributes)


def fail(reason: str, message: str = "") -> None:
    """Marks the current span failed with the mesh's reason (an expected failure: bad input, a
    limit), where no exception reaches the span itself."""
    current = trace.get_current_span()
    if _enabled and current.is_recording():
        current.set_attribute("convertmesh.reason", reason)
        current.set_status(Status(StatusCode.ERROR, message or reason))


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Adds the current context (`traceparent`, `tracestate`) to message headers."""
    if _enabled:
        propagate.inject(headers)
    return headers


def metadata() -> tuple[tuple[str, str], ...] | None:
    """The current context as a gRPC call's metadata (`traceparent`, `tracestate`), for the
    orchestrator's server span to continue; None with tracing off or no current span. In place
    of the client instrumentation: its span said what the server's says, and its interceptor
    (grpc.aio's interception, a span, the status it awaits) cost 100-300 us per call sampled
    or not (`bench/tracing.py`'s attribution table)."""
    if not _enabled:
        return None
    carried: dict[str, str] = {}
    propagate.inject(carried)
    return tuple(carried.items()) or None


def extract(headers: Mapping[str, str] | None) -> Context | None:
    """The context a message's headers carry (None: start a new trace)."""
    if not _enabled or not headers:
        return None
    return propagate.extract(dict(headers))


def task_attributes(task: TaskSpec) -> dict[str, str | int | bool]:
    """What a span about one task says about it: ids, formats, the job's tenant."""
    attributes: dict[str, str | int | bool] = {
        "convertmesh.job_id": task.job_id,
        "convertmesh.tenant": task.tenant,
        "convertmesh.task_id": task.task_id,
        "convertmesh.task_kind": task.kind.name.lower(),
        "convertmesh.source_format": task.source_format,
        "convertmesh.output_format": task.options.format,
    }
    if task.tool:
        attributes["convertmesh.tool"] = task.tool
    if task.job_archive:
        attributes["convertmesh.job_archive"] = True
    else:
        attributes["convertmesh.file_index"] = task.file_index
    if task.entry_index is not None:
        attributes["convertmesh.entry_index"] = task.entry_index
    return attributes


# --- sandbox processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class SpanRecord:
    """A span finished in a sandbox process, in plain values (picklable whatever the SDK)."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    status: int
    description: str
    events: tuple[tuple[str, int, dict[str, Any]], ...] = field(default=())


def carrier() -> dict[str, str]:
    """The current context for a sandboxed call; empty when tracing is off or the current span
    is not sampled (the sandbox then records nothing: its spans would not be sampled either)."""
    if not _enabled or not trace.get_current_span().is_recording():
        return {}
    return inject({})


class _Recorded(Span):
    """A span in a sandbox process: what the SDK's span would record for the worker's trace
    (ids, parent, kind, times, attributes, status, events), in plain values, without the SDK's
    machinery (sampler, limits, processors, locks): a sandbox only hands its spans back."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent_id: int | None,
        kind: SpanKind,
        attributes: Attributes | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self._context = context
        self._parent_id = parent_id
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time.time_ns()
        self._end: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is None:
            self.attributes[key] = value

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            self.events.append((name, timestamp or time.time_ns(), dict(attributes or {})))

    def update_name(self, name: str) -> None:
        self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK's: nothing changes an OK status, and UNSET changes nothing.
        if not isinstance(status, Status):
            status = Status(status, description)
        if self._status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
            return
        self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # The SDK's event, attribute for attribute.
        module, qualname = type(exception).__module__, type(exception).__qualname__
        named = f"{module}.{qualname}" if module and module != "builtins" else qualname
        recorded: dict[str, Any] = {
            "exception.type": named,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        recorded.update(attributes or {})
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is None:
            self._end = end_time or time.time_ns()

    def record(self) -> SpanRecord:
        return SpanRecord(
            name=self.name,
            trace_id=self._context.trace_id,
            span_id=self._context.span_id,
            parent_id=self._parent_id,
            kind=self.kind.value,
            start=self._start,
            end=self._end or 0,
            attributes=self.attributes,
            status=self._status.status_code.value,
            description=self._status.description or "",
            events=tuple(self.events),
        )


# In a sandbox process, during a traced call: where its finished spans go.
_recording: list[SpanRecord] | None = None
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


@contextlib.contextmanager
def _recorded_span(
    name: str, kind: SpanKind, attributes: Attributes | None, parent: Context | None
) -> Iterator[Span]:
    """`span()` in a sandboxed call: a _Recorded span, current inside the block, ended like the
    SDK's `start_as_current_span` ends its own (an exception: its event and an ERROR status)."""
    above = trace.get_current_span(parent).get_span_context()
    span_id = random.getrandbits(64) or 1
    recorded = _Recorded(
        name,
        SpanContext(above.trace_id, span_id, False, _SAMPLED),
        above.span_id if above.is_valid else None,
        kind,
        attributes,
    )
    token = otel_context.attach(trace.set_span_in_context(recorded))
    try:
        yield recorded
    except Exception as error:
        recorded.record_exception(error)
        recorded.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        raise
    finally:
        otel_context.detach(token)
        recorded.end()
        if _recording is not None:
            _recording.append(recorded.record())


@contextlib.contextmanager
def sandboxed(context_carrier: Mapping[str, str]) -> Iterator[list[SpanRecord]]:
    """In a sandbox process: runs the block under the caller's context and fills the yielded
    list with the spans it recorded (`span()` and `stage()` record them as `SpanRecord`s, no
    SDK involved). Records nothing for an empty carrier: tracing is off inside the block."""
    global _enabled, _recording  # the sandbox process's own state, one call at a time
    records: list[SpanRecord] = []
    if not context_carrier:
        yield records
        return
    enabled, _enabled, _recording = _enabled, True, records
    token = otel_context.attach(propagate.extract(dict(context_carrier)))
    try:
        yield records
    finally:
        otel_context.detach(token)
        _enabled, _recording = enabled, None


def adopt(records: Sequence[SpanRecord]) -> None:
    """In the worker: exports spans a sandboxed call recorded, as this service's."""
    if not _enabled or not records or not _processors:
        return
    scope = InstrumentationScope(TRACER_NAME)
    flags = TraceFlags(TraceFlags.SAMPLED)
    for record in records:
        rebuilt = ReadableSpan(
            name=record.name,
            context=SpanContext(record.trace_id, record.span_id, False, flags),
            parent=(
                SpanContext(record.trace_id, record.parent_id, False, flags)
                if record.parent_id is not None
                else None
            ),
            resource=_resource,
            attributes=record.attributes,
            events=[Event(name, attrs, timestamp) for name, timestamp, attrs in record.events],
            kind=SpanKind(record.kind),
            status=Status(StatusCode(record.status), record.description or None),
            start_time=record.start,
            end_time=record.end,
            instrumentation_scope=scope,
        )
        for processor in _processors:
            processor.on_end(rebuilt)


def stage(
    name: str, **attributes: str | int | float | bool
) -> contextlib.AbstractContextManager[Span]:
    """A step of a pipeline (probe, decode, process, encode...), wherever it runs."""
    if not _enabled:
        return _NO_SPAN
    return span(name, attributes={f"convertmesh.{k}": v for k, v in attributes.items()})


# --- HTTP spans without secrets -------------------------------------------------------------


def redact(url: str) -> str:
    """The URL with the values of secret query parameters replaced."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (name, REDACTED if name.lower() in SECRET_PARAMETERS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _redact_span_urls(target: Span) -> None:
    attributes = getattr(target, "attributes", None) or {}
    for key in ("http.url", "url.full", "url.query", "http.target"):
        value = attributes.get(key)
        if isinstance(value, str):
            redacted = (
                redact("http://x/?" + value).split("?", 1)[1]
                if key == "url.query"
                else redact(value)
            )
            if redacted != value:
                target.set_attribute(key, redacted)


def _redact_httpx(target: Span, request: Any) -> None:
    _redact_span_urls(target)


async def _redact_httpx_async(target: Span, request: Any) -> None:
    _redact_span_urls(target)
