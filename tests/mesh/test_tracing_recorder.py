"""The sandbox's span recorder (`mesh.tracing.sandboxed`): the same `SpanRecord`s the SDK's
spans gave, value for value (ids, parent, kind, attributes, status, events), for one block of
the helpers a pipeline calls, run once through the SDK and once through the recorder."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mesh import tracing
from mesh.errors import MeshError, Reason
from mesh.tracing import SpanRecord

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER = 0xB7AD6B7169203331
CARRIER = {"traceparent": f"00-{TRACE_ID:032x}-{CALLER:016x}-01"}


def pipeline() -> None:
    """What a sandboxed pipeline does with the helpers: nested stages, attributes set on a
    stage and on the current span, an expected failure, an exception through two spans."""
    with tracing.stage("decode", source_format="png", frames=1) as step:
        tracing.set_attributes(step, {"convertmesh.width": 500, "convertmesh.height": 333})
    with tracing.span("tool", kind=SpanKind.INTERNAL, attributes={"convertmesh.tool": "trim"}):
        with tracing.stage("encode", output_format="webp"):
            tracing.annotate({"convertmesh.output_bytes": 1234})
        with tracing.stage("measure"):
            tracing.fail("bad_input", "The source is damaged.")
    with pytest.raises(MeshError), tracing.stage("outer"), tracing.stage("inner", attempt=2):
        raise MeshError(Reason.CORRUPT_INPUT, "no frames")


def _sdk_record(finished: ReadableSpan) -> SpanRecord:
    """What the sandbox handed back when it recorded through the SDK (its `_record`)."""
    context = finished.get_span_context()
    assert context is not None
    parent = finished.parent
    return SpanRecord(
        name=finished.name,
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_id=parent.span_id if parent is not None else None,
        kind=finished.kind.value,
        start=finished.start_time or 0,
        end=finished.end_time or 0,
        attributes=dict(finished.attributes or {}),
        status=finished.status.status_code.value,
        description=finished.status.description or "",
        events=tuple(
            (event.name, event.timestamp, dict(event.attributes or {})) for event in finished.events
        ),
    )


def through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> list[SpanRecord]:
    """`pipeline()` on an SDK provider of its own (never the process's global one), under the
    carrier's context, as the sandbox ran it before the recorder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with monkeypatch.context() as patched:
        patched.setattr(tracing, "_tracer", provider.get_tracer(tracing.TRACER_NAME))
        patched.setattr(tracing, "_enabled", True)
        token = otel_context.attach(propagate.extract(CARRIER))
        try:
            pipeline()
        finally:
            otel_context.detach(token)
    return [_sdk_record(span) for span in exporter.get_finished_spans()]


def _comparable(records: list[SpanRecord]) -> list[tuple[Any, ...]]:
    """Each record with its ids as names (the ids are random), times as their order, the
    exception's stack trace as its last line."""
    names = {record.span_id: record.name for record in records}
    names[CALLER] = "caller"
    assert len(names) == len(records) + 1, "span ids are unique"
    rows = []
    for record in records:
        assert record.trace_id == TRACE_ID
        assert 0 < record.start <= record.end
        events = []
        for name, timestamp, attributes in record.events:
            assert record.start <= timestamp <= record.end
            stack = attributes.pop("exception.stacktrace", None)
            if stack is not None:
                assert stack.startswith("Traceback") and "no frames" in stack.splitlines()[-1]
            events.append((name, attributes))
        rows.append(
            (
                record.name,
                names[record.parent_id] if record.parent_id is not None else None,
                record.kind,
                record.attributes,
                record.status,
                record.description,
                events,
            )
        )
    return rows


def test_the_recorder_gives_the_records_the_sdk_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = through_the_sdk(monkeypatch)
    assert len(expected) == 6
    with tracing.sandboxed(CARRIER) as recorded:
        pipeline()
        assert trace.get_current_span().get_span_context().span_id == CALLER
    with tracing.sandboxed(CARRIER) as again, tracing.stage("decode"):
        pass
    assert _comparable(recorded) == _comparable(expected)
    # The finishing order too: a child before its parent, as the SDK's processors saw them.
    assert [r.name for r in recorded] == [
        "decode",
        "encode",
        "measure",
        "tool",
        "inner",
        "outer",
    ]
    assert [r.name for r in again] == ["decode"]  # each call hands back only its own spans
    by_name = {r.name: r for r in recorded}
    assert by_name["measure"].status == trace.StatusCode.ERROR.value
    assert by_name["measure"].description == "The source is damaged."
    assert by_name["measure"].attributes["convertmesh.reason"] == "bad_input"
    assert [name for name, _, _ in by_name["inner"].events] == ["exception"]
    assert by_name["outer"].events[0][2]["exception.type"] == "mesh.errors.MeshError"


def test_without_a_carrier_nothing_is_recorded_and_spans_cost_nothing() -> None:
    assert not tracing.enabled()
    with tracing.sandboxed(CARRIER) as traced:
        assert tracing.enabled()
        with tracing.stage("decode") as step:
            assert step.is_recording()
    assert not tracing.enabled()  # on for the traced call only
    with tracing.sandboxed({}) as untraced, tracing.stage("decode") as step:
        assert not step.is_recording()
        tracing.annotate({"convertmesh.output_bytes": 1})
    assert [r.name for r in traced] == ["decode"] and untraced == []


def test_adopted_records_keep_their_ids_and_parent() -> None:
    # What the worker exports: each record rebuilt as the SDK's ReadableSpan, unchanged.
    with tracing.sandboxed(CARRIER) as recorded:
        pipeline()
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    saved = tracing._enabled, list(tracing._processors)
    tracing._enabled, tracing._processors[:] = True, [processor]
    try:
        tracing.adopt(recorded)
    finally:
        tracing._enabled, tracing._processors[:] = saved[0], saved[1]
    assert [_sdk_record(span) for span in exporter.get_finished_spans()] == recorded
