"""Tracing settings, redaction, and the SDK for real in child processes (a provider is global to
a process: the test process itself never installs one): both OTLP protocols to loopback
receivers, a sandboxed call's spans carried back to its caller, and nothing at all without an
exporter."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from mesh import logs, tracing
from mesh.settings import SettingsError, load
from mesh.tracing import TracingSettings, redact, traced_rpc, traced_server_rpc
from tests.otlp import PRODUCER, GrpcReceiver, HttpReceiver

ROOT = Path(__file__).resolve().parents[2]


def settings(**env: str) -> TracingSettings:
    return load(TracingSettings.read, env)


def test_no_variable_means_no_exporter() -> None:
    assert not settings().enabled
    # A ConfigMap lists every variable, empty.
    assert not settings(
        OTEL_EXPORTER_OTLP_ENDPOINT="", OTEL_TRACES_EXPORTER="", OTEL_EXPORTER_OTLP_PROTOCOL=""
    ).enabled


def test_an_endpoint_means_otlp_with_the_signal_path_for_http_only() -> None:
    http = settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318/")
    assert (http.exporters, http.protocol) == (("otlp",), "http/protobuf")
    assert http.endpoint == "http://127.0.0.1:4318/v1/traces"
    grpc = settings(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    assert (grpc.protocol, grpc.endpoint) == ("grpc", "http://127.0.0.1:4317")
    signal = settings(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:2/custom",
    )
    assert signal.endpoint == "http://127.0.0.1:2/custom"


def test_exporters_are_chosen_by_name_and_the_sdk_can_be_disabled() -> None:
    assert settings(OTEL_TRACES_EXPORTER="console").exporters == ("console",)
    both = settings(OTEL_TRACES_EXPORTER="console, otlp", OTEL_EXPORTER_OTLP_ENDPOINT="x")
    assert both.exporters == ("console", "otlp")
    assert not settings(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="x").enabled
    assert not settings(OTEL_EXPORTER_OTLP_ENDPOINT="x", OTEL_SDK_DISABLED="true").enabled


def test_unknown_exporters_and_protocols_are_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER"):
        settings(OTEL_TRACES_EXPORTER="zipkin")
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        settings(OTEL_EXPORTER_OTLP_PROTOCOL="http/json")


def test_signatures_never_reach_a_span() -> None:
    url = "http://gw/api/jobs/1/files/0?expires=17&signature=c2VjcmV0&limit=2"
    redacted = redact(url)
    assert "c2VjcmV0" not in redacted
    assert "signature=REDACTED" in redacted and "expires=17" in redacted and "limit=2" in redacted
    assert redact("http://gw/api/jobs") == "http://gw/api/jobs"


def test_log_lines_carry_the_current_trace_and_span() -> None:
    formatter = logs.JsonFormatter("image")
    record = logging.LogRecord("x", logging.INFO, "", 0, "task done", (), None)
    assert "trace_id" not in formatter.format(record)
    context = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        line = formatter.format(record)
    assert f'"trace_id": "{0x1234:032x}"' in line and f'"span_id": "{0x5678:016x}"' in line


# What a service does at start and on a task, in a process of its own.
CHILD = """
import asyncio, sys
from mesh import sandbox, tracing
from mesh.settings import load
from opentelemetry.trace import SpanKind
from tests.mesh import sandbox_targets

async def main():
    with tracing.span("task", kind=SpanKind.PRODUCER, attributes={"convertmesh.job_id": "j1"}):
        headers = tracing.inject({})
        assert headers["traceparent"].startswith("00-"), headers
        await sandbox.run_isolated(
            sandbox_targets.traced_steps, 2, limits=sandbox.SandboxLimits(30, None)
        )
    await sandbox.shutdown()

sandbox.preload(["tests.mesh.sandbox_targets"])
tracing.configure("probe", load(tracing.TracingSettings.read, {
    "OTEL_EXPORTER_OTLP_ENDPOINT": sys.argv[1], "OTEL_EXPORTER_OTLP_PROTOCOL": sys.argv[2]
}))
asyncio.run(main())
tracing.shutdown()
"""


def run_child(endpoint: str, protocol: str) -> None:
    subprocess.run(
        [sys.executable, "-c", CHILD, endpoint, protocol],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_reach_a_collector_over_either_protocol_with_the_sandbox_steps(
    protocol: str,
) -> None:
    receiver_type = HttpReceiver if protocol == "http/protobuf" else GrpcReceiver
    with receiver_type() as receiver:
        run_child(receiver.endpoint, protocol)
        spans = receiver.wait_for(lambda found: len(found) >= 4, within=30)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"task", "sandbox", "step 1", "step 2"}
    assert {span.service for span in spans} == {"probe"}
    assert len({span.trace_id for span in spans}) == 1
    task, call = by_name["task"], by_name["sandbox"]
    assert task.kind == PRODUCER and task.attributes["convertmesh.job_id"] == "j1"
    assert call.parent_id == task.span_id
    # Recorded in the sandbox process, under the caller's span, exported by the caller.
    for step in ("step 1", "step 2"):
        assert by_name[step].parent_id == call.span_id
        assert by_name[step].attributes["convertmesh.pid"] == call.attributes["sandbox.pid"]
        assert call.start <= by_name[step].start <= by_name[step].end <= call.end


class _Call:
    def __init__(
        self, method: str | bytes, metadata: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        self.method = method
        self.invocation_metadata = metadata


def test_health_reflection_and_watches_get_no_grpc_span() -> None:
    # The grpc aio client hands its filter the method as bytes, the server as a string.
    for method in ("/mesh.jobs.v1.JobService/CreateJob", b"/mesh.jobs.v1.JobService/UploadBlob"):
        assert traced_rpc(_Call(method))
    for method in (
        "/grpc.health.v1.Health/Check",
        b"/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/mesh.jobs.v1.JobService/WatchJob",
        b"/mesh.jobs.v1.JobService/WatchJob",
    ):
        assert not traced_rpc(_Call(method))


def test_a_sandboxed_call_of_an_unsampled_span_gets_no_context() -> None:
    script = """
import sys
from mesh import tracing
from mesh.settings import load
tracing.configure("probe", load(tracing.TracingSettings.read, {"OTEL_TRACES_EXPORTER": "console"}))
with tracing.span("call") as span:
    carrier = tracing.carrier()
    assert span.is_recording() == (sys.argv[1] == "always_on"), span
    assert bool(carrier) == span.is_recording(), carrier
    assert not carrier or int(carrier["traceparent"][-2:], 16) & 1, carrier  # the sampled flag
"""
    for sampler in ("always_on", "always_off"):
        subprocess.run(
            [sys.executable, "-c", script, sampler],
            cwd=ROOT,
            check=True,
            timeout=60,
            capture_output=True,
            env={**os.environ, "OTEL_TRACES_SAMPLER": sampler},
        )


def test_without_an_exporter_nothing_is_installed() -> None:
    script = """
import grpc.aio, httpx
from opentelemetry import trace
from mesh import tracing
channel, transport = grpc.aio.insecure_channel, httpx.AsyncHTTPTransport.handle_async_request
tracing.configure("probe", tracing.TracingSettings())
assert not tracing.enabled()
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
assert grpc.aio.insecure_channel is channel
assert httpx.AsyncHTTPTransport.handle_async_request is transport
with tracing.span("x") as span:
    assert not span.is_recording()
assert tracing.inject({}) == {} and tracing.carrier() == {}
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)


SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_a_leaf_rpc_of_an_unsampled_caller_gets_no_server_span() -> None:
    upload, read = "/mesh.jobs.v1.JobService/UploadBlob", "/mesh.jobs.v1.JobService/ReadOutput"
    create = "/mesh.jobs.v1.JobService/CreateJob"
    for leaf in (upload, read):
        assert not traced_server_rpc(_Call(leaf, (("traceparent", UNSAMPLED),)))
        assert not traced_server_rpc(
            _Call(leaf, (("x", "y"), ("traceparent", UNSAMPLED[:-2] + "02")))
        )
        assert traced_server_rpc(_Call(leaf, (("traceparent", SAMPLED),)))
        # No caller's decision (or none readable): the root of a trace, the sampler decides.
        assert traced_server_rpc(_Call(leaf, ()))
        assert traced_server_rpc(_Call(leaf, None))
        assert traced_server_rpc(_Call(leaf, (("traceparent", "garbage"),)))
        assert traced_server_rpc(_Call(leaf, (("traceparent", UNSAMPLED[:-2] + "zz"),)))
    # Its handler starts spans and sends the context on: the unsampled decision must travel.
    assert traced_server_rpc(_Call(create, (("traceparent", UNSAMPLED),)))
    assert not traced_server_rpc(_Call("/grpc.health.v1.Health/Check", ()))
    assert not traced_server_rpc(_Call("/mesh.jobs.v1.JobService/WatchJob", ()))


# Real gRPC through the official server interceptor with the mesh's filter, called as the
# gateway calls (the context in the metadata, `tracing.metadata()`): what a handler sees.
GRPC_CHILD = """
import asyncio, json
import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from mesh import tracing

seen = []

async def handler(request, context):
    span = trace.get_current_span()
    seen.append([span.get_span_context().is_valid, span.is_recording()])
    return b"ok"

async def main():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    interceptor = aio_server_interceptor(provider, tracing.traced_server_rpc)
    server = grpc.aio.server(interceptors=[interceptor])
    methods = {m: grpc.unary_unary_rpc_method_handler(handler) for m in ("UploadBlob", "CreateJob")}
    service = grpc.method_handlers_generic_handler("mesh.jobs.v1.JobService", methods)
    server.add_generic_rpc_handlers((service,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    tracing._enabled = True  # what configure() sets; this process installs no provider
    tracer = provider.get_tracer("test")
    unsampled = TracerProvider(sampler=ParentBased(ALWAYS_OFF)).get_tracer("test")
    for name, parent in (("sampled", tracer), ("unsampled", unsampled)):
        with parent.start_as_current_span(name):
            for method in ("UploadBlob", "CreateJob"):
                call = channel.unary_unary(f"/mesh.jobs.v1.JobService/{method}")
                await call(b"x", metadata=tracing.metadata())
    await channel.close()
    await server.stop(None)
    spans = [[s.name, s.kind.name] for s in exporter.get_finished_spans()]
    print(json.dumps({"seen": seen, "spans": spans}))

asyncio.run(main())
"""


def test_through_grpc_an_unsampled_callers_leaf_call_runs_without_a_span() -> None:
    done = subprocess.run(
        [sys.executable, "-c", GRPC_CHILD],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    # (valid context, recording) in the handler: UploadBlob, CreateJob sampled, then unsampled.
    assert result["seen"] == [[True, True], [True, True], [False, False], [True, False]]
    upload, create = "/mesh.jobs.v1.JobService/UploadBlob", "/mesh.jobs.v1.JobService/CreateJob"
    assert sorted(map(tuple, result["spans"])) == sorted(
        [(upload, "SERVER"), (create, "SERVER"), ("sampled", "INTERNAL")]
    )


def test_the_gateways_calls_carry_the_context_in_their_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracing.metadata() is None  # tracing off
    monkeypatch.setattr(tracing, "_enabled", True)
    assert tracing.metadata() is None  # no current span: the server's span is a root
    for flags in (1, 0):  # the unsampled decision travels too
        context = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(flags))
        with trace.use_span(NonRecordingSpan(context)):
            carried = tracing.metadata()
        assert carried == (("traceparent", f"00-{0x1234:032x}-{0x5678:016x}-0{flags}"),)
