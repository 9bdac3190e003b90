"""What tracing costs, end to end: CPU per 500 px thumbnail through the mesh without an exporter,
with one (OTLP/HTTP to a loopback collector that only counts what it gets) sampling every
request, and with one sampling a tenth (the standard `parentbased_traceidratio` sampler), side
by side in one run, with a second untraced mesh as the control (two identical meshes differ by
the run's noise); writes `bench/tracing.md`. Goal: under 5 % more CPU per request.

    .venv/bin/python -m bench.tracing [--rounds 8] [--seconds 8] [--connections 4]

It drives `bench.e2e`'s meshes (four `launcher` meshes, `untraced`, `control`, `traced`,
`sampled`, each with its own nats-server), its wrk scripts and its CPU accounting (every process
of a mesh, sandboxes included, read before and after each run); the flows (sync `/api/convert`
and async job -> events -> download) run in interleaved rounds whose order rotates and reverses
(thumbor and pyvips direct, `make bench`'s baselines, are not started). Ratios are given over
all rounds and as the median of each round's own ratio (robust to the load of a shared machine
drifting between rounds). Then the parts, in this process: what the mesh's instrumentation adds
to one HTTP request, one gRPC call of each kind and one span, sampled and not; and where an
unsampled gRPC call's added time goes (grpc.aio's interception alone, the instrumentation's
filtered-out path, its client side, its server side). With tracing off, the helpers the
services call cost what the last table says per call.

Length: the defaults, 8 rounds of 8 s per target (8 targets: 8.5 minutes of load, plus the
meshes' start, the warm-ups and the parts), are what a result to trust needs on a shared machine:
in 5 rounds of 3 s, `control`'s per-round ratio against `untraced` (two identical meshes: the
noise floor) ranged over 0.90-1.49 (the `bench/tracing.md` of that run), far more than the 5 %
being measured. Runs are not bounded by the jobs a mesh can take: every WatchJob of an
orchestrator is served by its one shared watch of the jobs bucket (`services/orchestrator/
watches.py`; a consumer per watch, kept 5 minutes by nats-py's default, once stopped a mesh at
JetStream's 1000 consumers per stream after about 1000 jobs), however long the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.e2e import OUT, ROOT, Run, probe, servers, summarise
from mesh import tracing
from services.gateway.metrics import tracing_middleware
from tests.otlp import HttpReceiver

WORKLOAD = "thumbnail"
GOAL = 0.05


def disabled_costs() -> list[tuple[str, float]]:
    """Nanoseconds per call of the helpers the services call, with tracing off (this process
    never configures it)."""
    assert not tracing.enabled()
    headers = {"Nats-Msg-Id": "x"}

    def span() -> None:
        with tracing.span("x"):
            pass

    calls = {
        "span()": span,
        "inject(headers)": lambda: tracing.inject(headers),
        "extract(headers)": lambda: tracing.extract(headers),
        "annotate(attributes)": lambda: tracing.annotate({"a": 1}),
        "carrier()": tracing.carrier,
    }
    number = 200_000
    return [
        (name, min(timeit.repeat(call, number=number, repeat=3)) / number * 1e9)
        for name, call in calls.items()
    ]


# --- the parts, in one process: what each instrumented operation adds -----------------------


class _EncodingExporter(SpanExporter):
    """Encodes each batch as the mesh's OTLP exporters do (`mesh.tracing.encode_spans`, to
    protobuf) and sends it nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        tracing.encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _provider(sampled: bool) -> TracerProvider:
    provider = TracerProvider(sampler=ALWAYS_ON if sampled else ParentBased(ALWAYS_OFF))
    provider.add_span_processor(BatchSpanProcessor(_EncodingExporter()))
    return provider


# The modes of the parts table: no instrumentation; the mesh's, every span sampled (and
# encoded); the mesh's with nothing sampled (what a request the sampler leaves out costs).
MODES = ("plain", "sampled", "unsampled")
JOBS = "mesh.jobs.v1.JobService"
UPLOAD_CHUNK = 256 * 1024
PHOTO_BYTES = 347 * 1024  # bench.e2e's photo
THUMBNAIL_BYTES = 40 * 1024
HTTP_PART = "HTTP request (the gateway's request spans)"
CONVERT_PART = "gRPC Convert (client and server; the photo in, the thumbnail out)"
SPAN_PART = "one of the mesh's own spans"
SYNC_PARTS = (HTTP_PART, CONVERT_PART)


async def _upload(requests: AsyncIterator[bytes], context: Any) -> bytes:
    size = 0
    async for chunk in requests:
        size += len(chunk)
    return str(size).encode()


async def _create(request: bytes, context: Any) -> bytes:
    return b"job"


async def _convert(request: bytes, context: Any) -> bytes:
    return b"t" * THUMBNAIL_BYTES


def _parent(sampled: bool) -> Context:
    """The context the gateway's calls are made in: its request's span, sampled or not."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD, 0xB7AD6B71, True, flags))
    return trace.set_span_in_context(span)


def _carried(parent: Context | None) -> tuple[tuple[str, str], ...] | None:
    """What `mesh.tracing.metadata()` gives a call made in `parent` (None: tracing off)."""
    if parent is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=parent)
    return tuple(carrier.items())


async def _read(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"t" * THUMBNAIL_BYTES


async def _watch(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for state in (b"queued", b"running", b"succeeded"):
        yield state


async def _grpc_calls(
    providers: dict[str, TracerProvider | None],
) -> tuple[dict[str, dict[str, Callable[[], Awaitable[None]]]], list[Any]]:
    """A JobService look-alike (bytes in, bytes out) per mode: a server and a channel, as the
    mesh has them: the server instrumentation with the mesh's filter
    (`mesh.tracing.traced_server_rpc`), no client instrumentation, each call's metadata carrying
    the context of a request span (`mesh.tracing.metadata()`), sampled or not as the mode says."""
    calls: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {}
    opened: list[Any] = []
    handlers = grpc.method_handlers_generic_handler(
        JOBS,
        {
            "UploadBlob": grpc.stream_unary_rpc_method_handler(_upload),
            "CreateJob": grpc.unary_unary_rpc_method_handler(_create),
            "Convert": grpc.unary_unary_rpc_method_handler(_convert),
            "ReadOutput": grpc.unary_stream_rpc_method_handler(_read),
            "WatchJob": grpc.unary_stream_rpc_method_handler(_watch),
        },
    )
    photo = b"p" * PHOTO_BYTES
    for mode, provider in providers.items():
        server_side: list[Any] = []
        parent: Context | None = None
        if provider is not None:
            server_side = [aio_server_interceptor(provider, tracing.traced_server_rpc)]  # type: ignore[no-untyped-call]
            parent = _parent(sampled=mode == "sampled")
        server = grpc.aio.server(interceptors=server_side)
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        opened.append((channel, server))
        upload = channel.stream_unary(f"/{JOBS}/UploadBlob")
        create = channel.unary_unary(f"/{JOBS}/CreateJob")
        convert = channel.unary_unary(f"/{JOBS}/Convert")
        read = channel.unary_stream(f"/{JOBS}/ReadOutput")
        watch = channel.unary_stream(f"/{JOBS}/WatchJob")

        async def chunks() -> AsyncIterator[bytes]:
            yield b"header"
            for start in range(0, len(photo), UPLOAD_CHUNK):
                yield photo[start : start + UPLOAD_CHUNK]

        async def call_upload(upload: Any = upload, parent: Context | None = parent) -> None:
            await upload(chunks(), metadata=_carried(parent))

        async def call_create(create: Any = create, parent: Context | None = parent) -> None:
            await create(b"request", metadata=_carried(parent))

        async def call_convert(convert: Any = convert, parent: Context | None = parent) -> None:
            await convert(photo, metadata=_carried(parent))

        async def call_read(read: Any = read, parent: Context | None = parent) -> None:
            async for _ in read(b"request", metadata=_carried(parent)):
                pass

        async def call_watch(watch: Any = watch) -> None:
            async for _ in watch(b"request"):  # the gateway's WatchJob carries no context
                pass

        calls[mode] = {
            CONVERT_PART: call_convert,
            "gRPC UploadBlob (client and server; 1 + 2 messages)": call_upload,
            "gRPC CreateJob (client and server)": call_create,
            "gRPC ReadOutput (client and server; 1 message)": call_read,
            "gRPC WatchJob (client and server; left out by the filter)": call_watch,
        }
    return calls, opened


def _asgi_calls(
    providers: dict[str, TracerProvider | None],
) -> dict[str, Callable[[], Awaitable[None]]]:
    """A sync conversion's HTTP side: the photo as the request body (64 KiB receive events, as
    uvicorn hands them), the thumbnail back, through the gateway's tracing middleware or none."""

    async def convert(request: Request) -> Response:
        await request.body()
        return Response(b"t" * THUMBNAIL_BYTES, media_type="image/jpeg")

    routes = [Route("/api/convert", convert, methods=["POST"])]
    body = b"p" * PHOTO_BYTES
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/convert",
        "raw_path": b"/api/convert",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    events = [
        {"type": "http.request", "body": body[i : i + 65536], "more_body": True}
        for i in range(0, len(body), 65536)
    ]
    events.append({"type": "http.request", "body": b"", "more_body": False})
    calls: dict[str, Callable[[], Awaitable[None]]] = {}
    for mode, provider in providers.items():
        middleware = tracing_middleware(routes, provider) if provider is not None else None
        app = Starlette(routes=routes, middleware=[middleware] if middleware else [])

        async def request(app: Starlette = app) -> None:
            pending = iter(events)

            async def receive() -> dict[str, Any]:
                return next(pending)

            async def send(message: Any) -> None:
                pass

            await app(dict(scope), receive, send)

        calls[mode] = request
    return calls


def _span_calls(
    providers: dict[str, TracerProvider | None],
) -> dict[str, Callable[[], Awaitable[None]]]:
    """One of the mesh's own spans (dispatch, task, stage...): six attributes, ended."""
    attributes = {f"convertmesh.attribute_{n}": "value" for n in range(6)}
    calls: dict[str, Callable[[], Awaitable[None]]] = {}
    for mode, provider in providers.items():
        tracer = provider.get_tracer(tracing.TRACER_NAME) if provider is not None else None

        async def one(tracer: Any = tracer) -> None:
            if tracer is not None:
                with tracer.start_as_current_span("stage", attributes=attributes):
                    pass

        calls[mode] = one
    return calls


async def _parts(rounds: int, block: int) -> dict[str, dict[str, float]]:
    providers: dict[str, TracerProvider | None] = {
        "plain": None,
        "sampled": _provider(True),
        "unsampled": _provider(False),
    }
    grpc_calls, opened = await _grpc_calls(providers)
    asgi = _asgi_calls(providers)
    spans = _span_calls(providers)
    operations: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {
        HTTP_PART: asgi,
        **{name: {m: grpc_calls[m][name] for m in MODES} for name in grpc_calls["plain"]},
        SPAN_PART: spans,
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {m: [] for m in MODES} for name in operations
    }
    try:
        for number in range(rounds):
            for name, by_mode in operations.items():
                order = MODES if number % 2 == 0 else MODES[::-1]
                for mode in order:
                    call = by_mode[mode]
                    for _ in range(5):
                        await call()
                    started = time.process_time()
                    for _ in range(block):
                        await call()
                    provider = providers[mode]
                    if provider is not None:
                        provider.force_flush()  # the encoding is part of the cost
                    samples[name][mode].append((time.process_time() - started) / block * 1e6)
    finally:
        for channel, server in opened:
            await channel.close()
            await server.stop(None)
        for provider in providers.values():
            if provider is not None:
                provider.shutdown()
    return {name: {m: statistics.median(v) for m, v in by.items()} for name, by in samples.items()}


def part_costs(rounds: int = 9, block: int = 60) -> dict[str, dict[str, float]]:
    """Microseconds of CPU (this process, every thread) per operation and mode, the median
    of `rounds` interleaved blocks (the order alternates)."""
    return asyncio.run(_parts(rounds, block))


# --- where an unsampled gRPC call's time goes ------------------------------------------------


class _PassUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _PassUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _PassStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(details, request_iterator)


class _PassServer(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return await continuation(details)


def _never(details: Any) -> bool:
    return False


# Interceptors (client, server) per setup: none; grpc.aio's machinery alone (interceptors that
# only pass the call on); the official ones with a filter that refuses every call (what
# WatchJob and health checks cost); the official ones, unsampled, on one side or on both, with
# `traced_rpc` on both; and the mesh's: no client interceptor, the context in each call's
# metadata (`mesh.tracing.metadata()`, here an unsampled request's), `traced_server_rpc` on the
# server (a leaf RPC whose caller is not sampled gets no server span).
def _attribution_setups(
    provider: TracerProvider,
) -> dict[str, tuple[list[Any], list[Any], Context | None]]:
    def client(keep: Any = tracing.traced_rpc) -> list[Any]:
        return list(aio_client_interceptors(provider, keep))  # type: ignore[no-untyped-call]

    def server(keep: Any = tracing.traced_server_rpc) -> list[Any]:
        return [aio_server_interceptor(provider, keep)]  # type: ignore[no-untyped-call]

    return {
        "none": ([], [], None),
        "pass-through interceptors": (
            [_PassUnaryUnary(), _PassUnaryStream(), _PassStreamUnary()],
            [_PassServer()],
            None,
        ),
        "official, filtered out": (client(_never), server(_never), None),
        "official client only": (client(), [], None),
        "official server only": ([], server(tracing.traced_rpc), None),
        "official, both sides": (client(), server(tracing.traced_rpc), None),
        "the mesh's: context in metadata, leaf calls skip the server": (
            [],
            server(),
            _parent(sampled=False),
        ),
    }


async def _attribution(rounds: int, block: int) -> dict[str, dict[str, float]]:
    provider = _provider(False)
    setups = _attribution_setups(provider)
    handlers = grpc.method_handlers_generic_handler(
        JOBS,
        {
            "UploadBlob": grpc.stream_unary_rpc_method_handler(_upload),
            "CreateJob": grpc.unary_unary_rpc_method_handler(_create),
            "ReadOutput": grpc.unary_stream_rpc_method_handler(_read),
        },
    )
    photo = b"p" * PHOTO_BYTES

    async def chunks() -> AsyncIterator[bytes]:
        yield b"header"
        for start in range(0, len(photo), UPLOAD_CHUNK):
            yield photo[start : start + UPLOAD_CHUNK]

    calls: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {}
    opened: list[Any] = []
    for name, (client_side, server_side, parent) in setups.items():
        server = grpc.aio.server(interceptors=server_side)
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_side or None)
        opened.append((channel, server))
        create = channel.unary_unary(f"/{JOBS}/CreateJob")
        read = channel.unary_stream(f"/{JOBS}/ReadOutput")
        upload = channel.stream_unary(f"/{JOBS}/UploadBlob")

        async def call_create(create: Any = create, parent: Context | None = parent) -> None:
            await create(b"request", metadata=_carried(parent))

        async def call_read(read: Any = read, parent: Context | None = parent) -> None:
            async for _ in read(b"request", metadata=_carried(parent)):
                pass

        async def call_upload(upload: Any = upload, parent: Context | None = parent) -> None:
            await upload(chunks(), metadata=_carried(parent))

        calls[name] = {"CreateJob": call_create, "ReadOutput": call_read, "UploadBlob": call_upload}
    names = list(setups)
    samples: dict[str, dict[str, list[float]]] = {
        op: {name: [] for name in names} for op in ("CreateJob", "ReadOutput", "UploadBlob")
    }
    try:
        for number in range(rounds):
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            if number % 2:
                order.reverse()
            for op, by_setup in samples.items():
                for name in order:
                    call = calls[name][op]
                    for _ in range(5):
                        await call()
                    started = time.process_time()
                    for _ in range(block):
                        await call()
                    by_setup[name].append((time.process_time() - started) / block * 1e6)
    finally:
        for channel, server in opened:
            await channel.close()
            await server.stop(None)
        provider.shutdown()
    return {op: {n: statistics.median(v) for n, v in by.items()} for op, by in samples.items()}


def grpc_attribution(rounds: int = 21, block: int = 60) -> dict[str, dict[str, float]]:
    """Microseconds of CPU per unsampled call (client and server in this process) for each
    interceptor setup, the median of `rounds` interleaved blocks (the order rotates)."""
    return asyncio.run(_attribution(rounds, block))


def write_attribution(costs: dict[str, dict[str, float]]) -> list[str]:
    setups = list(next(iter(costs.values())))
    out = [
        "",
        "## Where an unsampled gRPC call's time goes",
        "",
        "CPU per call in this process (client and server), nothing sampled, the median of "
        "interleaved blocks; in brackets, against no interceptors. `pass-through interceptors` "
        "is grpc.aio's interception alone (interceptors that only hand the call on), `official, "
        "filtered out` the instrumentation with a filter refusing every call: what is left "
        "between them and `official, both sides` is the instrumentation's own work for a call "
        "that gets a (non-recording) span: starting the spans, the context put into the "
        "metadata and read back, the status the client interceptor awaits. `official, both "
        "sides` filters with `traced_rpc` on both (the mesh before `LEAF_RPCS`); the last "
        "column is the mesh's: no client interceptor (the gateway puts the context in each "
        "call's metadata), and a server that skips a leaf RPC (UploadBlob, ReadOutput) of an "
        "unsampled caller: CreateJob is its control.",
        "",
        "| call | " + " | ".join(setups) + " |",
        "| --- |" + " --- |" * len(setups),
    ]
    for op, by_setup in costs.items():
        base = by_setup["none"]
        cells = [f"{base:.0f}"] + [
            f"{by_setup[n]:.0f} ({by_setup[n] - base:+.0f})" for n in setups[1:]
        ]
        out.append(f"| {op} | " + " | ".join(cells) + " |")
    return out


# The meshes: labels and the settings each adds (the OTLP endpoints are filled in at start).
# `control` is a second untraced mesh: how far two identical meshes differ in one run is the
# noise floor the others' ratios must be read against.
VARIANTS = {
    "untraced": {},
    "control": {},
    "traced": {},
    "sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}
COMPARED = ("control", "traced", "sampled")
FLOWS = ("sync", "async")
# A sync request (one small file, answered inline through Convert) has 8 spans: the request's,
# the orchestrator's Convert, and these 6 of the mesh's own: dispatch, task, sandbox, decode,
# process, encode.
SYNC_OWN_SPANS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--output", type=Path, default=ROOT / "tracing.md")
    args = parser.parse_args()
    work = OUT / "tracing"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: list[tuple[int, Run]] = []
    requests = dict.fromkeys(VARIANTS, 0)
    with HttpReceiver(keep=False) as traced_sink, HttpReceiver(keep=False) as sampled_sink:
        sinks = {"traced": traced_sink, "sampled": sampled_sink}
        variants = {
            label: {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sinks[label].endpoint}
            if label in sinks
            else env
            for label, env in VARIANTS.items()
        }
        with servers(work, variants, baselines=False) as bench:
            targets = [t for t in bench.targets if t not in ("thumbor", "direct")]
            for target in targets:
                probe(bench, target, WORKLOAD)
                warm = bench.run(target, WORKLOAD, args.connections, 2)
                requests[label_of(target)] += warm.completed + 1
            for number in range(args.rounds):
                order = targets[number % len(targets) :] + targets[: number % len(targets)]
                if number % 2:
                    order.reverse()
                for target in order:
                    run = bench.run(target, WORKLOAD, args.connections, args.seconds)
                    runs.append((number, run))
                    requests[label_of(target)] += run.completed
                    print(
                        f"round {number + 1} {target:15} {run.rate:5.1f}/s cpu/req "
                        f"{cpu_per_request(run):6.1f} ms",
                        flush=True,
                    )
        # The meshes have stopped: their exporters flushed on the way out.
        spans = {label: sink.received / max(requests[label], 1) for label, sink in sinks.items()}
    print("the parts, in one process...", flush=True)
    parts = part_costs()
    print("where an unsampled gRPC call's time goes...", flush=True)
    attribution = grpc_attribution()
    write(
        args,
        runs,
        targets,
        spans_per_request=spans,
        parts=parts,
        attribution=attribution,
        load_before=load_before,
    )
    print(f"wrote {args.output}")


def label_of(target: str) -> str:
    return target.rsplit("-", 1)[0]


def cpu_per_request(run: Run) -> float:
    return sum(run.cpu.values()) / max(run.completed, 1) * 1000


def round_ratios(runs: list[tuple[int, Run]], label: str, flow: str) -> list[float]:
    """Per round, the label's CPU per request over untraced's in the same round."""
    by_round: dict[tuple[int, str], float] = {
        (number, run.target): cpu_per_request(run) for number, run in runs
    }
    rounds = sorted({number for number, _ in runs})
    return [
        by_round[(n, f"{label}-{flow}")] / by_round[(n, f"untraced-{flow}")]
        for n in rounds
        if by_round.get((n, f"untraced-{flow}"))
    ]


def write(
    args: argparse.Namespace,
    runs: list[tuple[int, Run]],
    targets: list[str],
    *,
    spans_per_request: dict[str, float],
    parts: dict[str, dict[str, float]],
    attribution: dict[str, dict[str, float]],
    load_before: tuple[float, ...],
) -> None:
    all_runs = [run for _, run in runs]
    stats = {t: summarise(all_runs, t, WORKLOAD) for t in targets}
    out = [
        "# What tracing costs",
        "",
        "Written by `bench/tracing.py` from one run (`make bench-tracing`); rerun to refresh.",
        "",
        f"- load: wrk, {args.connections} connections, {args.seconds:g} s per run, "
        f"{args.rounds} interleaved rounds (the order rotates, every other round reversed), "
        "after a warm-up run of each; load average "
        f"{', '.join(f'{x:.2f}' for x in load_before)} before the run (the machine is shared)",
        "- `untraced` and `control`: no OTEL_* variable (no provider, no instrumentation), two "
        "identical meshes: `control` against `untraced` is the run's noise floor; `traced`: "
        "OTEL_EXPORTER_OTLP_ENDPOINT to a loopback OTLP/HTTP receiver, SDK defaults (batch "
        f"export every 5 s), every request sampled: {spans_per_request['traced']:.1f} spans per "
        "request arrived; `sampled`: the same with `OTEL_TRACES_SAMPLER=parentbased_traceidratio"
        f"`, `OTEL_TRACES_SAMPLER_ARG=0.1`: {spans_per_request['sampled']:.1f} spans per request",
        "- CPU: every process of the mesh (gateway, orchestrator, the three workers and the "
        "image sandboxes, nats-server), per completed request; the receivers' own CPU is not "
        "counted",
        "",
        "| flow | req/s (median; min) | p50 ms | errors | CPU ms/req | against untraced (all "
        "rounds) | per round (median; min-max) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for target in targets:
        st = stats[target]
        label, flow = target.rsplit("-", 1)
        base = stats[f"untraced-{flow}"]["cpu_total"]
        ratio = st["cpu_total"] / base if base else 0.0
        per_round = round_ratios(runs, label, flow) if label != "untraced" else []
        rounds_cell = (
            f"{statistics.median(per_round):.3f}x; {min(per_round):.3f}-{max(per_round):.3f}"
            if per_round
            else "-"
        )
        out.append(
            f"| {target} | {st['rate']:.1f}; {st['rate_min']:.1f} | {st['p50']:.0f} | "
            f"{st['errors']:.0f} | {st['cpu_total']:.1f} | {ratio:.3f}x | {rounds_cell} |"
        )
    names = [k[4:] for k in stats[targets[0]] if k.startswith("cpu:")]
    out += ["", "## CPU per request, by process (ms)", ""]
    out += ["| process | " + " | ".join(targets) + " |", "| --- |" + " --- |" * len(targets)]
    for name in names:
        cells = " | ".join(f"{stats[t]['cpu:' + name]:.1f}" for t in targets)
        out.append(f"| {name} | {cells} |")
    out.append("")

    def overheads(label: str) -> list[float]:
        return [
            stats[f"{label}-{flow}"]["cpu_total"] / stats[f"untraced-{flow}"]["cpu_total"] - 1
            for flow in FLOWS
        ]

    # Two identical meshes differ by this much in this run: a smaller difference says nothing.
    noise = max(abs(x) for x in overheads("control"))
    for label in COMPARED:
        added = overheads(label)
        rounds = [statistics.median(round_ratios(runs, label, flow)) - 1 for flow in FLOWS]
        if label == "control":
            verdict = "no tracing at all: the run's noise floor"
        else:
            verdict = ("within" if max(added) < GOAL else "over") + f" the {GOAL * 100:.0f} % goal"
            if max(abs(x) for x in added) <= noise:
                verdict += (
                    f", but no further from `untraced` than `control` is ({noise * 100:.1f} %)"
                )
        out.append(
            f"- `{label}`: CPU per request sync {added[0] * 100:+.1f} %, async "
            f"{added[1] * 100:+.1f} % against `untraced` over all rounds (per-round median "
            f"sync {rounds[0] * 100:+.1f} %, async {rounds[1] * 100:+.1f} %): {verdict}."
        )
    out += write_parts(parts, spans_per_request, stats["untraced-sync"]["cpu_total"])
    out += write_attribution(attribution)
    out += [
        "",
        "## With tracing off: the helpers per call",
        "",
        "| helper | ns per call |",
        "| --- | --- |",
        *(f"| `tracing.{name}` | {ns:.0f} |" for name, ns in disabled_costs()),
        "",
    ]
    args.output.write_text("\n".join(out))


def write_parts(
    parts: dict[str, dict[str, float]], spans_per_request: dict[str, float], untraced_ms: float
) -> list[str]:
    """The parts table, and what they add up to for one sync request."""
    out = [
        "",
        "## The parts, in one process",
        "",
        "CPU per operation (every thread of this process: the spans' OTLP encoding included, "
        "their sending not), the median of interleaved blocks, with no instrumentation, with "
        "the mesh's (its request spans, its gRPC server instrumentation and filter, the "
        "context in each call's metadata) sampling every span, and with nothing sampled. gRPC: "
        "a JobService look-alike over loopback, client and server in this process, the sizes "
        "of a thumbnail request's messages.",
        "",
        "| operation | plain us | sampled us | (added) | unsampled us | (added) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_mode in parts.items():
        plain = by_mode["plain"]
        out.append(
            f"| {name} | {plain:.0f} | {by_mode['sampled']:.0f} | "
            f"{by_mode['sampled'] - plain:+.0f} | {by_mode['unsampled']:.0f} | "
            f"{by_mode['unsampled'] - plain:+.0f} |"
        )
    own = SYNC_OWN_SPANS
    for mode in ("sampled", "unsampled"):
        # A part that came out cheaper than plain (noise) counts as 0.
        added = sum(max(parts[name][mode] - parts[name]["plain"], 0.0) for name in SYNC_PARTS)
        span_cost = parts[SPAN_PART][mode]
        total = added + own * span_cost
        out.append("")
        out.append(
            f"- a sync request (answered inline), {mode}: the HTTP request and its Convert call "
            f"{added / 1000:.2f} ms, plus {own} of the mesh's own spans "
            f"{own * span_cost / 1000:.2f} ms: {total / 1000:.2f} ms, "
            f"{total / 1000 / untraced_ms * 100:.1f} % of `untraced-sync`'s "
            f"{untraced_ms:.1f} ms per request in this run (left out: NATS header injection and "
            "extraction, the sandbox hand-off, the exporter's HTTP posts; a part measured cheaper "
            "than plain counts as 0)"
        )
    return out


if __name__ == "__main__":
    main()
