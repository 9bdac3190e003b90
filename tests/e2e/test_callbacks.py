"""Signed callbacks through the real mesh: a loopback receiver (opened by the operator
allowlist) verifies signatures, sees progress and terminal events, and the retry schedule."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from launcher.mesh import LocalMesh
from mesh.errors import Reason, from_grpc_error
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.orchestrator import signing
from tests.corpus import CORPUS
from tests.e2e.conftest import running_mesh
from tests.e2e.test_grpc import upload
from tests.mesh.http_receiver import Answer, Received, Receiver

SECRET = "whsec_test_0123456789"
# Long next to a conversion of two photos, however busy the machine: a hung receiver must be
# seen not to hold the job back for the length of one attempt.
TIMEOUT_SECONDS = 20.0
IMAGE = (CORPUS / "exif-orientation-examples/Landscape_1.jpg").read_bytes()
CORRUPT_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x13" * 200


@pytest.fixture(scope="module")
def callback_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("callback-mesh"),
        IMAGE_CONCURRENCY="2",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
        OUTBOUND_ALLOW_HOSTS="127.0.0.1",
        CALLBACK_RETRY_DELAYS="1,2",
        CALLBACK_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        PUBLIC_BASE_URL="https://convert.example",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
async def stub(callback_mesh: LocalMesh) -> AsyncIterator[jobs_pb2_grpc.JobServiceStub]:
    async with grpc.aio.insecure_channel(callback_mesh.grpc_target) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel)


async def create(
    stub: jobs_pb2_grpc.JobServiceStub, sources: list[bytes], url: str, secret: str = SECRET
) -> str:
    files = []
    for number, data in enumerate(sources):
        blob = await upload(stub, data, f"in{number}.jpg")
        files.append(
            jobs_pb2.FileSpec(
                blob_id=blob.blob_id,
                filename=f"in{number}.jpg",
                options=jobs_pb2.FileOptions(format="png", resize="email"),
            )
        )
    created = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="acme", files=files, callback_url=url, callback_secret=secret
        )
    )
    job_id: str = created.job.job_id
    return job_id


def deliveries(receiver: Receiver, path: str, job_id: str) -> list[tuple[Received, Any]]:
    seen = []
    for request in receiver.at(path):
        body = json.loads(request.body)
        if body["data"]["jobId"] == job_id:
            seen.append((request, body))
    return seen


async def until(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {within} s")
        await asyncio.sleep(0.1)


async def job_callbacks(
    stub: jobs_pb2_grpc.JobServiceStub, job_id: str, expected: int, within: float
) -> list[jobs_pb2.CallbackDelivery]:
    deadline = time.monotonic() + within
    while True:
        job = await stub.GetJob(jobs_pb2.GetJobRequest(tenant="acme", job_id=job_id))
        if len(job.callbacks) >= expected or time.monotonic() > deadline:
            return list(job.callbacks)
        await asyncio.sleep(0.2)


async def test_receiver_verifies_signed_progress_and_completed_events(
    stub: jobs_pb2_grpc.JobServiceStub, receiver: Receiver, callback_mesh: LocalMesh
) -> None:
    job_id = await create(stub, [IMAGE, IMAGE], receiver.url("/ok"))
    seen = await until(
        lambda: len(d := deliveries(receiver, "/ok", job_id)) >= 3 and d, 60, "3 callbacks"
    )
    types = sorted(body["type"] for _, body in seen)
    assert types == ["conversion.completed", "conversion.progress", "conversion.progress"]
    for request, body in seen:
        stamp = int(request.headers["convertly-timestamp"])
        header = request.headers["convertly-signature"]
        assert signing.verify(SECRET, header, request.body, now=stamp)
        assert not signing.verify("wrong-secret", header, request.body, now=stamp)
        assert request.headers["convertly-event"] == body["type"]
        assert body["id"].startswith("evt_")
    assert len({body["id"] for _, body in seen}) == 3
    completed = next(body for _, body in seen if body["type"] == "conversion.completed")
    data = completed["data"]
    assert data["status"] == "completed" and data["completedFiles"] == 2
    link = urlsplit(data["results"]["files"][1]["downloadUrl"])
    assert (link.scheme, link.netloc, link.path) == (
        "https",
        "convert.example",
        f"/api/jobs/{job_id}/files/1",
    )
    # The receiver fetches the output with the signed link alone, no API key.
    async with httpx.AsyncClient(timeout=30) as plain:
        download = await plain.get(f"{callback_mesh.http_url}{link.path}?{link.query}")
    assert download.status_code == 200, download.text
    assert download.content.startswith(b"\x89PNG")

    recorded = await job_callbacks(stub, job_id, 3, within=60)
    assert sorted((c.type, c.attempt, c.status, c.http_status) for c in recorded) == [
        ("conversion.completed", 1, "delivered", 200),
        ("conversion.progress", 1, "delivered", 200),
        ("conversion.progress", 1, "delivered", 200),
    ]


async def test_a_job_whose_only_file_fails_sends_conversion_failed(
    stub: jobs_pb2_grpc.JobServiceStub, receiver: Receiver
) -> None:
    job_id = await create(stub, [CORRUPT_JPEG], receiver.url("/failures"))
    seen = await until(
        lambda: len(d := deliveries(receiver, "/failures", job_id)) >= 2 and d, 60, "2 callbacks"
    )
    failed = [body for _, body in seen if body["type"] == "conversion.failed"]
    assert len(failed) == 1 and failed[0]["data"]["status"] == "failed"
    assert failed[0]["data"]["results"]["files"][0]["errorCode"]


async def test_retries_follow_the_configured_schedule_until_delivered(
    stub: jobs_pb2_grpc.JobServiceStub, receiver: Receiver
) -> None:
    answered: dict[str, int] = {}

    async def flaky(request: Received) -> Answer:
        event = json.loads(request.body)["id"]
        answered[event] = answered.get(event, 0) + 1
        return (500, {}, b"not yet") if answered[event] <= 2 else (200, {}, b"ok")

    receiver.routes["/flaky"] = flaky
    job_id = await create(stub, [IMAGE], receiver.url("/flaky"))
    seen = await until(
        lambda: len(d := deliveries(receiver, "/flaky", job_id)) >= 6 and d, 60, "6 attempts"
    )
    for kind in ("conversion.progress", "conversion.completed"):
        times = [request.at for request, body in seen if body["type"] == kind]
        assert len(times) == 3
        first_gap, second_gap = times[1] - times[0], times[2] - times[1]
        # Never before the configured delay (1 s, then 2 s, each -20 %); the upper bounds leave
        # room for a busy machine's delivery latency yet stay below the default schedule's
        # 5 s and 25 s, so a schedule that was not applied would show.
        assert 0.75 <= first_gap <= 4.0, first_gap
        assert 1.55 <= second_gap <= 8.0, second_gap
        assert len({body["id"] for request, body in seen if body["type"] == kind}) == 1

    recorded = await job_callbacks(stub, job_id, 6, within=60)
    completed = sorted(
        (c.attempt, c.status, c.http_status) for c in recorded if c.type == "conversion.completed"
    )
    assert completed == [(1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200)]


async def test_a_receiver_that_stays_down_gets_three_attempts_then_failed(
    stub: jobs_pb2_grpc.JobServiceStub, receiver: Receiver
) -> None:
    async def down(_: Received) -> Answer:
        return 503, {}, b"down"

    receiver.routes["/down"] = down
    job_id = await create(stub, [IMAGE], receiver.url("/down"))
    recorded = await job_callbacks(stub, job_id, 6, within=30)
    completed = sorted(
        (c.attempt, c.status, c.http_status) for c in recorded if c.type == "conversion.completed"
    )
    assert completed == [(1, "retrying", 503), (2, "retrying", 503), (3, "failed", 503)]
    await asyncio.sleep(3.0)  # longer than the last delay: nothing more may arrive
    assert len(deliveries(receiver, "/down", job_id)) == 6


async def test_a_receiver_that_never_answers_does_not_delay_the_job(
    stub: jobs_pb2_grpc.JobServiceStub, receiver: Receiver
) -> None:
    async def hang(_: Received) -> Answer:
        await asyncio.sleep(60)
        return 200, {}, b""

    receiver.routes["/hang"] = hang
    job_id = await create(stub, [IMAGE, IMAGE], receiver.url("/hang"))
    async for update in stub.WatchJob(jobs_pb2.WatchJobRequest(tenant="acme", job_id=job_id)):
        last = update
    done_at = time.monotonic()
    assert last.status == jobs_pb2.JOB_STATUS_COMPLETED
    # Had a delivery blocked result processing, the job could not have completed before the
    # first hanging request timed out.
    first = await until(lambda: deliveries(receiver, "/hang", job_id), 30, "a hanging callback")
    assert done_at < first[0][0].at + TIMEOUT_SECONDS
    assert not [c for c in last.callbacks if c.status == "delivered"]
    recorded = await job_callbacks(stub, job_id, 1, within=TIMEOUT_SECONDS + 10)
    assert recorded and recorded[0].status == "retrying" and recorded[0].http_status == 0
    assert "No answer" in recorded[0].error


async def test_a_callback_host_that_does_not_resolve_fails_attempts_not_the_job(
    stub: jobs_pb2_grpc.JobServiceStub,
) -> None:
    # `.invalid` never resolves (RFC 6761): whether the resolver answers at once, hangs, or is
    # absent (a network namespace), creation must not wait for it and each delivery attempt
    # must fail on its own, be recorded, and be retried on the schedule.
    job_id = await create(stub, [IMAGE], "http://hooks.convertmesh-test.invalid/cb")
    recorded = await job_callbacks(stub, job_id, 6, within=90)
    job = await stub.GetJob(jobs_pb2.GetJobRequest(tenant="acme", job_id=job_id))
    assert job.status == jobs_pb2.JOB_STATUS_COMPLETED
    for event_type in ("conversion.progress", "conversion.completed"):
        attempts = sorted((c.attempt, c.status) for c in recorded if c.type == event_type)
        assert attempts == [(1, "retrying"), (2, "retrying"), (3, "failed")], recorded
    assert all(c.http_status == 0 and "resolve" in c.error for c in recorded), recorded


async def test_an_internal_callback_url_is_refused_at_creation(
    stub: jobs_pb2_grpc.JobServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, [IMAGE], "http://169.254.169.254/latest/meta-data/")
    error = from_grpc_error(caught.value)
    assert error.reason is Reason.INVALID_FIELD
    assert "callbackUrl" in error.detail["fields"]
