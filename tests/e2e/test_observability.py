"""Observability through the real mesh: one OpenTelemetry trace per job, from the gateway's
request to the callback, exported over OTLP/HTTP to a loopback receiver; every service's
Prometheus metrics moved by exactly one job's files, in names promtool accepts; logs that name
their trace.

One mesh for the module, traced (`OTEL_EXPORTER_OTLP_ENDPOINT`), with a callback receiver."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from launcher.mesh import METRICS_SERVICES, LocalMesh
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS, auth, running_mesh, wait_for_job
from tests.mesh.http_receiver import Answer, Received, Receiver
from tests.otlp import CLIENT, CONSUMER, PRODUCER, SERVER, HttpReceiver, ReceivedSpan

SECRET = "whsec_observability_0123456789"
SANDBOX_STAGES = {
    "image": {"decode", "process", "encode"},
    "media": {"probe", "transcode", "measure"},
}


@pytest.fixture(scope="module")
def otlp() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def traced_mesh(
    tmp_path_factory: pytest.TempPathFactory, otlp: HttpReceiver
) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("traced-mesh"),
        IMAGE_CONCURRENCY="2",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
        OUTBOUND_ALLOW_HOSTS="127.0.0.1",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        # Every task says STARTED at once, so each trace has both results applied under the
        # task (by default a task done within 0.5 s sends only its end).
        TASK_STARTED_GRACE_SECONDS="0",
    ) as local:
        yield local


@pytest.fixture(scope="module")
async def client(traced_mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=traced_mesh.http_url, timeout=30) as http:
        yield http


@dataclass
class Trace:
    spans: list[ReceivedSpan]

    def __post_init__(self) -> None:
        self.by_id = {span.span_id: span for span in self.spans}

    @property
    def trace_id(self) -> str:
        return self.spans[0].trace_id

    def named(self, name: str, service: str = "", **attributes: Any) -> list[ReceivedSpan]:
        """The spans called `name` (of `service`) with these `convertmesh.*` attributes."""
        return [
            span
            for span in self.spans
            if span.name == name
            and span.service == (service or span.service)
            and all(span.attributes.get(f"convertmesh.{k}") == v for k, v in attributes.items())
        ]

    def one(self, name: str, service: str = "", **attributes: Any) -> ReceivedSpan:
        found = self.named(name, service, **attributes)
        assert len(found) == 1, (name, attributes, [s.attributes for s in found])
        return found[0]

    def parent(self, span: ReceivedSpan) -> ReceivedSpan:
        return self.by_id[span.parent_id]

    def children(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.parent_id == span.span_id]

    def chain(self, span: ReceivedSpan) -> list[str]:
        """`service: name` from the span up to the root."""
        names = [f"{span.service}: {span.name}"]
        while span.parent_id:
            span = self.parent(span)
            names.append(f"{span.service}: {span.name}")
        return names


def trace_of(spans: list[ReceivedSpan], job_id: str) -> Trace:
    ids = {s.trace_id for s in spans if s.attributes.get("convertmesh.job_id") == job_id}
    assert len(ids) == 1, f"job {job_id} is in {len(ids)} traces"
    (trace_id,) = ids
    return Trace([s for s in spans if s.trace_id == trace_id])


def closed(trace: Trace) -> bool:
    """Every span's parent has arrived too: the processes export in batches of their own, so a
    stage span can be received before the task span around it has ended and been sent."""
    return all(span.parent_id in trace.by_id for span in trace.spans if span.parent_id)


def complete(job_id: str, *required: tuple[str, dict[str, Any]]) -> Any:
    """A wait condition: the job's trace has every (span name, attributes) required, and the
    parent of every span received."""

    def found(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.attributes.get("convertmesh.job_id") == job_id]
        if not mine:
            return False
        trace = Trace([s for s in spans if s.trace_id == mine[0].trace_id])
        return closed(trace) and all(
            trace.named(name, **attributes) for name, attributes in required
        )

    return found


async def submit(
    client: httpx.AsyncClient, files: list[tuple[str, bytes]], data: dict[str, str]
) -> dict[str, Any]:
    response = await client.post(
        "/api/jobs",
        headers=auth(),
        data=data,
        files=[("files", (name, content, "application/octet-stream")) for name, content in files],
    )
    assert response.status_code == 200, response.text
    job = await wait_for_job(client, response.json()["jobId"], within=120)
    assert job["status"] == "completed", job
    return job


def assert_task_chain(trace: Trace, service: str, task: ReceivedSpan) -> None:
    """A worker's task: continues its dispatch, holds the runtime's stages, the sandbox's
    steps under its own span, and its results are applied as children of it."""
    dispatch = trace.parent(task)
    assert (task.kind, dispatch.kind) == (CONSUMER, PRODUCER)
    assert (dispatch.service, dispatch.name) == ("orchestrator", f"dispatch {service}")
    assert dispatch.attributes["convertmesh.task_id"] == task.attributes["convertmesh.task_id"]
    stages = {s.name: s for s in trace.children(task)}
    # The sandbox span is the convert stage (no span of its own around it).
    assert {"fetch source", "sandbox", "store output"} <= set(stages)
    assert "convert" not in stages
    sandbox = stages["sandbox"]
    # Progress results are published from inside the sandbox span, and applied under it.
    steps = [s for s in trace.children(sandbox) if s.name != "apply result"]
    assert SANDBOX_STAGES[service] <= {s.name for s in steps}, steps
    for step in steps:
        assert step.service == service  # recorded in the sandbox, exported by the worker
        assert sandbox.start <= step.start <= step.end <= sandbox.end
    applied = [s for s in trace.named("apply result") if s.parent_id == task.span_id]
    assert {s.attributes["convertmesh.result"] for s in applied} >= {"STARTED", "SUCCEEDED"}
    assert all(s.service == "orchestrator" for s in applied)


def assert_rooted_at_the_request(trace: Trace, span: ReceivedSpan) -> None:
    chain = trace.chain(span)
    # The gateway's call carries its request's context; the orchestrator's span is the call's.
    assert chain[-2:] == [
        "orchestrator: /mesh.jobs.v1.JobService/CreateJob",
        "gateway: POST /api/jobs",
    ], chain
    roots = [s for s in trace.spans if not s.parent_id]
    assert [(r.service, r.name, r.kind) for r in roots] == [("gateway", "POST /api/jobs", SERVER)]


async def test_an_image_job_is_one_trace_from_the_request_to_the_callback(
    client: httpx.AsyncClient,
    otlp: HttpReceiver,
    hooks: Receiver,
    traced_mesh: LocalMesh,
) -> None:
    png = (CORPUS / "pillow/hopper.png").read_bytes()
    hook = hooks.url("/traced")
    job = await submit(
        client,
        [("hopper.png", png)],
        {"format": "webp", "callbackUrl": hook, "callbackSecret": SECRET},
    )
    job_id, item = job["jobId"], job["results"]["files"][0]
    download = await client.get(item["downloadUrl"])  # the signed link, no key
    assert download.status_code == 200
    signature = parse_qs(urlsplit(item["downloadUrl"]).query)["signature"][0]
    spans = await asyncio.to_thread(
        otlp.wait_for,
        complete(
            job_id,
            ("deliver callback", {"event": "conversion.completed", "outcome": "delivered"}),
            ("encode", {}),
        ),
    )
    trace = trace_of(spans, job_id)
    assert {s.service for s in trace.spans} == {"gateway", "orchestrator", "image"}
    task = trace.one("task image")
    assert task.attributes["convertmesh.tenant"] == "acme"
    assert task.attributes["convertmesh.file_index"] == 0
    assert task.attributes["convertmesh.source_format"] == "png"
    assert task.attributes["convertmesh.output_format"] == "webp"
    assert task.attributes["convertmesh.output_bytes"] == item["finalSize"]
    assert task.attributes["convertmesh.outcome"] == "succeeded"
    fetched = next(s for s in trace.children(task) if s.name == "fetch source")
    assert fetched.attributes["convertmesh.input_bytes"] == len(png)
    assert_task_chain(trace, "image", task)
    encode = trace.one("encode")
    assert trace.chain(encode)[:4] == [
        "image: encode",
        "image: sandbox",
        "image: task image",
        "orchestrator: dispatch image",
    ]
    assert_rooted_at_the_request(trace, encode)
    upload = trace.one("/mesh.jobs.v1.JobService/UploadBlob", "orchestrator")
    assert upload.kind == SERVER and trace.parent(upload).name == "POST /api/jobs"
    assert not [s for s in trace.spans if s.service == "gateway" and s.kind == CLIENT]

    # The result that finished the job queued the callback; its delivery's HTTP request is a
    # child span, and the receiver got the same trace in `traceparent`.
    finished = next(
        s for s in trace.named("apply result") if s.attributes["convertmesh.result"] == "SUCCEEDED"
    )
    deliveries = trace.named("deliver callback")
    assert {trace.parent(d).span_id for d in deliveries} == {finished.span_id}
    completed = trace.one("deliver callback", event="conversion.completed")
    (request,) = trace.children(completed)
    assert (request.service, request.name, request.kind) == ("orchestrator", "POST", CLIENT)
    received = [r for r in hooks.at("/traced") if r.headers.get("convertly-event")]
    assert received and all(trace.trace_id in r.headers["traceparent"] for r in received)

    # The download is a trace of its own, whose URL lost its signature.
    def downloads(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [
            s
            for s in spans
            if s.name == "GET /api/jobs/{job_id}/files/{index}"
            and job_id in str(s.attributes.get("http.url"))
        ]

    download_spans = downloads(await asyncio.to_thread(otlp.wait_for, downloads))
    assert all("signature=REDACTED" in str(s.attributes.get("http.url")) for s in download_spans)
    # No key, callback secret or signature in any span of the run.
    for span in otlp.spans():
        for value in span.values():
            for secret in (*KEYS.values(), SECRET, signature):
                assert secret not in value, (span.name, value)

    # The worker's log lines of the task name its trace.
    lines = (traced_mesh.config.data_dir / "logs" / "image.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    done = [e for e in logged if e.get("msg") == "task done" and e.get("task") == f"{job_id}.0"]
    assert done and done[0]["trace_id"] == trace.trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", done[0]["span_id"])


async def test_a_media_job_is_one_trace_with_the_transcode_steps(
    client: httpx.AsyncClient, otlp: HttpReceiver
) -> None:
    wav = (CORPUS / "go-mediainfo/sample.wav").read_bytes()
    job = await submit(client, [("sample.wav", wav)], {"format": "mp3"})
    job_id = job["jobId"]
    spans = await asyncio.to_thread(
        otlp.wait_for, complete(job_id, ("measure", {}), ("apply result", {"result": "SUCCEEDED"}))
    )
    trace = trace_of(spans, job_id)
    assert {s.service for s in trace.spans} == {"gateway", "orchestrator", "media"}
    task = trace.one("task media")
    assert task.attributes["convertmesh.output_format"] == "mp3"
    assert_task_chain(trace, "media", task)
    transcode = trace.one("transcode")
    assert transcode.attributes["convertmesh.output_format"] == "mp3"
    assert_rooted_at_the_request(trace, transcode)


def test_sync_conversions_on_one_connection_are_one_trace_each(
    otlp: HttpReceiver, traced_mesh: LocalMesh
) -> None:
    # Back to back on one keep-alive connection, a request may arrive while the previous one's
    # response is still being finished: uvicorn then starts it from inside that request's
    # context, whose span became the new request's parent (many jobs in one trace).
    png = (CORPUS / "pillow/hopper.png").read_bytes()
    headers = {**auth(), "Accept": "application/octet-stream"}
    with httpx.Client(base_url=traced_mesh.http_url, timeout=60) as http:
        _until_answered_inline(traced_mesh, http, png, headers)
    started = time.time_ns()
    with httpx.Client(base_url=traced_mesh.http_url, timeout=60) as http:
        sizes = []
        for _ in range(6):
            answer = http.post(
                "/api/convert",
                headers=headers,
                files={"file": ("hopper.png", png)},
                data={"format": "webp"},
            )
            assert answer.status_code == 200, answer.text
            sizes.append(len(answer.content))

    def dispatched(spans: list[ReceivedSpan]) -> list[str]:
        return [
            s.attributes["convertmesh.job_id"]
            for s in spans
            if s.name == "dispatch image" and s.start >= started
        ]

    def all_six(spans: list[ReceivedSpan]) -> bool:
        later = [s.name for s in spans if s.start >= started]
        jobs = dispatched(spans)
        return (
            len(jobs) >= 6
            and all(later.count(name) >= 6 for name in ("encode", "POST /api/convert"))
            and all(closed(trace_of(spans, job_id)) for job_id in jobs)
        )

    spans = otlp.wait_for(all_six)
    new = dispatched(spans)
    assert len(new) == 6
    for job_id in new:
        trace = trace_of(spans, job_id)
        assert {s.attributes.get("convertmesh.job_id") for s in trace.spans} - {None} == {job_id}
        roots = [s for s in trace.spans if not s.parent_id]
        assert [(r.name, r.kind) for r in roots] == [("POST /api/convert", SERVER)]
        # One small file: answered inline (Convert, NATS request/reply), no job stored.
        task = trace.one("task image")
        assert trace.chain(task)[1:] == [
            "orchestrator: dispatch image",
            "orchestrator: /mesh.jobs.v1.JobService/Convert",
            "gateway: POST /api/convert",
        ]
        assert (task.kind, trace.parent(task).kind) == (CONSUMER, PRODUCER)
        (sandbox,) = [s for s in trace.children(task) if s.name == "sandbox"]
        assert {s.name for s in trace.children(task)} == {"sandbox"}
        assert SANDBOX_STAGES["image"] <= {s.name for s in trace.children(sandbox)}
        assert not trace.named("/mesh.jobs.v1.JobService/ReadOutput")
        assert task.attributes["convertmesh.output_bytes"] in sizes


def _until_answered_inline(
    local: LocalMesh, http: httpx.Client, png: bytes, headers: dict[str, str]
) -> None:
    """Converts until the image worker answers inline (the gateway is ready before it)."""
    port = local.config.metrics_ports["orchestrator"]
    deadline = time.monotonic() + 90
    while True:
        answer = http.post(
            "/api/convert", headers=headers, files={"file": ("h.png", png)}, data={"format": "jpg"}
        )
        assert answer.status_code == 200, answer.text
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        if any(
            line.startswith("convertmesh_sync_inline_total{") and 'outcome="converted"' in line
            for line in text.splitlines()
        ):
            return
        assert time.monotonic() < deadline, "no conversion answered inline"


def _zip_of_images() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(CORPUS / "pillow/hopper.png", "photos/hopper.png")
        archive.write(CORPUS / "pillow/hopper.bmp", "photos/hopper.bmp")
    return buffer.getvalue()


async def test_an_archive_job_and_its_fan_out_to_the_image_worker_are_one_trace(
    client: httpx.AsyncClient, otlp: HttpReceiver
) -> None:
    job = await submit(client, [("photos.zip", _zip_of_images())], {"format": "png"})
    job_id = job["jobId"]
    spans = await asyncio.to_thread(
        otlp.wait_for,
        complete(
            job_id,
            ("pack", {}),
            ("pack member", {}),
            ("apply result", {"result": "SUCCEEDED", "task_id": f"{job_id}.0.pack"}),
        ),
    )
    trace = trace_of(spans, job_id)
    assert {s.service for s in trace.spans} == {"gateway", "orchestrator", "archive", "image"}
    unpack = trace.one("task archive", task_kind="unpack")
    extract = trace.one("extract")
    assert trace.chain(extract)[:4] == [
        "archive: extract",
        "archive: sandbox",
        "archive: task archive",
        "orchestrator: dispatch archive",
    ]
    assert extract.attributes["convertmesh.entries"] == 2
    unpacked = next(
        s for s in trace.named("apply result", result="SUCCEEDED") if s.parent_id == unpack.span_id
    )
    # Each member's conversion is dispatched by the result of the UNPACK, in the same trace.
    members = trace.named("task image")
    assert sorted(m.attributes["convertmesh.entry_index"] for m in members) == [0, 1]
    for member in members:
        assert trace.parent(trace.parent(member)).span_id == unpacked.span_id
        assert_task_chain(trace, "image", member)
        assert trace.chain(member)[-4:-2] == [
            "archive: task archive",
            "orchestrator: dispatch archive",
        ]
    # The PACK follows the last member's result, and the file's completion follows the PACK.
    pack = trace.one("task archive", task_kind="pack")
    assert trace.parent(trace.parent(pack)).name == "apply result"
    assert "image: task image" in trace.chain(pack)
    assert_rooted_at_the_request(trace, trace.one("pack"))
    # Each member written into the zip is a span under the pack stage: position and size,
    # never its name.
    stage = trace.one("pack")
    written = trace.named("pack member")
    assert trace.chain(stage)[:4] == [
        "archive: pack",
        "archive: sandbox",
        "archive: task archive",
        "orchestrator: dispatch archive",
    ]
    assert {trace.parent(m).span_id for m in written} == {stage.span_id}
    assert all(stage.start <= m.start <= m.end <= stage.end for m in written)
    download = await client.get(job["results"]["files"][0]["downloadUrl"])
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as packed:
        infos = packed.infolist()
    assert stage.attributes["convertmesh.entries"] == len(infos) >= 2
    assert stage.attributes["convertmesh.member_spans"] == len(infos)
    assert sorted(m.attributes["convertmesh.member_index"] for m in written) == list(
        range(len(infos))
    )
    by_index = {m.attributes["convertmesh.member_index"]: m for m in written}
    assert [by_index[i].attributes["convertmesh.input_bytes"] for i in range(len(infos))] == [
        info.file_size for info in infos
    ]
    names = [info.filename.rsplit("/", 1)[-1] for info in infos]
    assert all(name not in value for m in written for value in m.values() for name in names)


async def test_a_media_tool_from_a_source_url_is_one_trace_with_the_fetch(
    client: httpx.AsyncClient, otlp: HttpReceiver, hooks: Receiver, traced_mesh: LocalMesh
) -> None:
    mp4 = (CORPUS / "go-mediainfo/sample.mp4").read_bytes()

    async def clip(_: Received) -> Answer:
        return 200, {"Content-Type": "application/octet-stream"}, mp4

    hooks.routes["/clip.mp4"] = clip
    port = traced_mesh.config.metrics_ports["orchestrator"]
    before = await asyncio.to_thread(lambda: parse(scrape_text(port)))
    response = await client.post(
        "/api/media/poster-frame",
        headers=auth(),
        data={"sourceUrl": hooks.url("/clip.mp4?X-Amz-Signature=c2VjcmV0"), "async": "true"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    job = await wait_for_job(client, job_id, within=120)
    assert job["status"] == "completed", job
    spans = await asyncio.to_thread(
        otlp.wait_for,
        complete(
            job_id, ("tool", {"tool": "poster-frame"}), ("apply result", {"result": "SUCCEEDED"})
        ),
    )
    trace = trace_of(spans, job_id)
    assert {s.service for s in trace.spans} == {"gateway", "orchestrator", "media"}
    # The orchestrator fetched the URL as a stage of CreateJob; its GET is a child span.
    fetched = trace.one("fetch source", "orchestrator")
    assert trace.chain(fetched)[1:] == [
        "orchestrator: /mesh.jobs.v1.JobService/CreateJob",
        "gateway: POST /api/media/poster-frame",
    ]
    assert fetched.attributes["convertmesh.input_bytes"] == len(mp4)
    assert fetched.attributes["convertmesh.source_format"] == "mp4"
    assert fetched.attributes["server.address"] == f"127.0.0.1:{hooks.port}"
    (get,) = trace.children(fetched)
    assert (get.name, get.kind) == ("GET", CLIENT)
    assert all("c2VjcmV0" not in value for span in trace.spans for value in span.values())
    # The worker ran the tool in its sandbox, under the task that continues the dispatch.
    task = trace.one("task media")
    assert task.attributes["convertmesh.tool"] == "poster-frame"
    assert task.attributes["convertmesh.task_kind"] == "tool"
    stages = {s.name for s in trace.children(task)}
    assert {"fetch source", "sandbox", "store output"} <= stages
    tool = trace.one("tool")
    assert trace.chain(tool)[:4] == [
        "media: tool",
        "media: sandbox",
        "media: task media",
        "orchestrator: dispatch media",
    ]
    assert tool.attributes["convertmesh.output_format"] == job["results"]["files"][0]["format"]
    after = await asyncio.to_thread(lambda: parse(scrape_text(port)))

    def moved(name: str, /, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("convertmesh_source_fetches_total", outcome="succeeded") == 1
    assert moved("convertmesh_source_fetches_total") == 1
    assert moved("convertmesh_source_fetch_bytes_total") == len(mp4)
    assert moved("convertmesh_source_fetch_seconds_count") == 1
    assert moved("convertmesh_jobs_created_total", type="tool") == 1


# --- metrics ---------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(found.group(3) or ""))
            samples[(found.group(1), labels)] = float(found.group(4))
    return samples


def value(samples: Samples, name: str, /, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def scrape_all(mesh: LocalMesh) -> dict[str, Samples]:
    return {
        service: parse(scrape_text(port)) for service, port in mesh.config.metrics_ports.items()
    }


async def test_every_service_counts_exactly_one_jobs_files(
    client: httpx.AsyncClient, traced_mesh: LocalMesh
) -> None:
    files = [
        ("hopper.png", (CORPUS / "pillow/hopper.png").read_bytes()),
        ("Landscape_1.jpg", (CORPUS / "exif-orientation-examples/Landscape_1.jpg").read_bytes()),
        ("sample.wav", (CORPUS / "go-mediainfo/sample.wav").read_bytes()),
        ("hopper.bmp", (CORPUS / "pillow/hopper.bmp").read_bytes()),
    ]
    formats = ["webp", "webp", "mp3", "zip"]
    before = await asyncio.to_thread(scrape_all, traced_mesh)
    job = await submit(client, files, {"formats": json.dumps(formats)})
    results = job["results"]["files"]
    # Results are applied (and counted) before the job reads as completed; the workers count
    # a task once its result is published, which may be just after.
    after = await asyncio.to_thread(settled_scrape, traced_mesh, before, len(files))
    delta = {
        service: {key: samples.get(key, 0.0) - before[service].get(key, 0.0) for key in samples}
        for service, samples in after.items()
    }

    def moved(process: str, name: str, /, **labels: str) -> float:
        return value(delta[process], name, **labels)

    assert (
        moved("gateway", "convertmesh_http_requests_total", route="/api/jobs", method="POST") == 1
    )
    assert moved("gateway", "convertmesh_http_received_bytes_total", route="/api/jobs") > sum(
        len(content) for _, content in files
    )
    assert moved("orchestrator", "convertmesh_jobs_created_total", type="convert") == 1
    assert moved("orchestrator", "convertmesh_jobs_finished_total", outcome="completed") == 1
    assert moved("orchestrator", "convertmesh_job_seconds_count", outcome="completed") == 1
    assert moved("orchestrator", "convertmesh_upload_bytes_total") == sum(len(c) for _, c in files)
    assert moved("orchestrator", "convertmesh_grpc_requests_total", method="UploadBlob") == 4
    assert moved("orchestrator", "convertmesh_grpc_requests_total", method="CreateJob") == 1
    finished = "convertmesh_files_finished_total"
    assert moved("orchestrator", finished, outcome="completed") == 4
    assert moved("orchestrator", finished, service="image", format="webp") == 2
    assert moved("orchestrator", finished, service="media", format="mp3") == 1
    assert moved("orchestrator", finished, service="archive", format="zip") == 1
    expected = {"image": [0, 1], "media": [2], "archive": [3]}
    for service, indexes in expected.items():
        count = len(indexes)
        assert moved(service, "convertmesh_tasks_total", outcome="succeeded") == count, service
        assert moved(service, "convertmesh_tasks_total") == count, service
        for stage in ("queue_wait", "fetch", "convert", "store"):
            name = "convertmesh_task_stage_seconds_count"
            assert moved(service, name, stage=stage) == count, (service, stage)
        size_in = sum(len(files[i][1]) for i in indexes)
        assert moved(service, "convertmesh_task_input_bytes_total") == size_in, service
        size_out = sum(results[i]["finalSize"] for i in indexes)
        assert moved(service, "convertmesh_task_output_bytes_total") == size_out, service
        assert moved(service, "convertmesh_redeliveries_total") == 0, service
        assert value(after[service], "convertmesh_tasks_in_flight") == 0, service
        # Read from JetStream at the scrape: the worker's consumer has nothing left.
        pending = value(after[service], "convertmesh_consumer_pending_messages", consumer=service)
        assert (
            pending == 0
            and (
                "convertmesh_consumer_pending_messages",
                frozenset({("stream", "TASKS"), ("consumer", service)}),
            )
            in after[service]
        ), service
        assert value(after[service], "convertmesh_sandbox_processes") >= 1, service
        assert value(after[service], "convertmesh_sandbox_resident_memory_bytes") > 0, service
    for service in METRICS_SERVICES:
        assert value(after[service], "convertmesh_service_info", service=service) == 1
        assert value(after[service], "process_resident_memory_bytes") > 0, service


def settled_scrape(mesh: LocalMesh, before: dict[str, Samples], tasks: int) -> dict[str, Samples]:
    deadline = time.monotonic() + 30
    while True:
        after = scrape_all(mesh)
        done = sum(
            value(after[s], "convertmesh_tasks_total") - value(before[s], "convertmesh_tasks_total")
            for s in ("image", "media", "archive")
        )
        if done >= tasks or time.monotonic() > deadline:
            return after
        time.sleep(0.2)


def test_every_services_exposition_passes_promtool(traced_mesh: LocalMesh, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) comes with make system-deps"
    for service, port in traced_mesh.config.metrics_ports.items():
        text = scrape_text(port)
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, (service, checked.stdout, checked.stderr)
        assert "convertmesh_" in text


async def test_the_public_port_serves_no_metrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


# --- sampling a share ------------------------------------------------------------------------


def test_sampling_a_share_keeps_whole_traces_and_no_orphans(tmp_path: Path) -> None:
    # parentbased_traceidratio: the gateway's request decides, every hop after it follows. A hop
    # that dropped the decision (a call without its traceparent) would start traces of its own,
    # sampled at the ratio: roots outside the gateway. The orchestrator's side of an unsampled
    # UploadBlob or ReadOutput has no span at all (mesh.tracing.LEAF_RPCS).
    png = (CORPUS / "pillow/hopper.png").read_bytes()
    jobs = 16
    with HttpReceiver() as receiver:
        with running_mesh(
            tmp_path / "sampled-mesh",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="0.5",
            OTEL_BSP_SCHEDULE_DELAY="100",
        ) as local:

            async def run() -> None:
                async with httpx.AsyncClient(base_url=local.http_url, timeout=60) as http:
                    for _ in range(jobs):
                        job = await submit(http, [("hopper.png", png)], {"format": "webp"})
                        download = await http.get(job["results"]["files"][0]["downloadUrl"])
                        assert download.status_code == 200

            asyncio.run(run())
        # The services have stopped: their exporters flushed on the way out.
        spans = receiver.spans()
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    for members in traces.values():
        ids = {s.span_id for s in members}
        roots = [s for s in members if not s.parent_id]
        assert [(r.service, r.kind) for r in roots] == [("gateway", SERVER)], [
            (s.service, s.name) for s in members
        ]
        assert all(s.parent_id in ids for s in members if s.parent_id)
    created = [s for s in spans if s.name == "POST /api/jobs"]
    assert 0 < len(created) < jobs, len(created)  # all 16 one way: 2 in 65,536
    # A sampled job's trace has the orchestrator's UploadBlob under the gateway's.
    uploads = [
        s for s in spans if s.name == "/mesh.jobs.v1.JobService/UploadBlob" and s.kind == SERVER
    ]
    assert len(uploads) == len(created)
    assert all(s.service == "orchestrator" for s in uploads)
