"""The mesh's OTLP encoder (`mesh.tracing.encode_spans`) against the SDK's: the same request,
message for message, for spans of every kind of content, and the exporters use it."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_trace_exporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from mesh import tracing
from mesh.settings import load


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    image = Resource.create({"service.name": "image", "service.namespace": "convertmesh"})
    for resource in (image, Resource.create({"service.name": "gateway"})):
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        remote = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            True,
            TraceFlags(TraceFlags.SAMPLED),
            TraceState([("vendor", "x1"), ("other", "y")]),
        )
        for scope in ("convertmesh", "opentelemetry.instrumentation.grpc"):
            tracer = provider.get_tracer(scope, "1.0", schema_url="https://example.test/s")
            with tracer.start_as_current_span(
                "task image",
                context=set_span_in_context(NonRecordingSpan(remote)),
                kind=SpanKind.CONSUMER,
                attributes={
                    "convertmesh.job_id": "6f1c2d7e",
                    "convertmesh.file_index": 0,
                    "convertmesh.ratio": 0.5,
                    "convertmesh.job_archive": True,
                    "convertmesh.formats": ("png", "webp"),
                    "convertmesh.sizes": (1, 2, 3),
                    "convertmesh.raw": b"\x00\x01",
                },
                links=[Link(remote, {"why": "retry"})],
            ) as task:
                task.add_event("progress", {"fraction": 0.5})
                for kind in SpanKind:
                    with tracer.start_as_current_span(kind.name.lower(), kind=kind):
                        pass
                try:
                    with tracer.start_as_current_span("decode"):
                        raise ValueError("no frames")
                except ValueError:
                    pass
                with tracer.start_as_current_span("measure") as failed:
                    failed.set_status(Status(StatusCode.ERROR, "The source is damaged."))
                with tracer.start_as_current_span("encode") as done:
                    done.set_status(Status(StatusCode.OK))
            with tracer.start_as_current_span("root"):
                pass
    spans = list(exporter.get_finished_spans())
    # One as a sandbox's span comes back (mesh.tracing.adopt): no scope, an event of its own.
    spans.append(
        ReadableSpan(
            name="adopted",
            context=SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED)),
            parent=SpanContext(1, 3, False, TraceFlags(TraceFlags.SAMPLED)),
            resource=image,
            attributes={"convertmesh.output_bytes": 12},
            events=[Event("exception", {"exception.type": "ValueError"}, 17)],
            kind=SpanKind.INTERNAL,
            status=Status(StatusCode.UNSET),
            start_time=10,
            end_time=20,
            instrumentation_scope=InstrumentationScope("convertmesh"),
        )
    )
    return spans


def test_the_request_is_the_sdk_encoders() -> None:
    spans = _spans()
    assert len(spans) > 20
    ours, theirs = tracing.encode_spans(spans), sdk_encode(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )
    assert len(ours.resource_spans) == 2
    assert [len(r.scope_spans) for r in ours.resource_spans] == [3, 2]  # the adopted one: 3rd
    assert tracing.encode_spans([]) == sdk_encode([])


def test_both_exporters_encode_with_it() -> None:
    settings = load(tracing.TracingSettings.read, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"})
    http = tracing._exporter("otlp", settings)
    assert http_trace_exporter.encode_spans is tracing.encode_spans  # type: ignore[attr-defined]
    http.shutdown()
    grpc = load(
        tracing.TracingSettings.read,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    )
    exporter = tracing._exporter("otlp", grpc)
    spans = _spans()
    assert exporter._translate_data(spans) == sdk_encode(spans)  # type: ignore[attr-defined]
    exporter.shutdown()
