"""Retries against a real loopback server: 503/429 with Retry-After are waited out as told and
then succeed, 4xx are never repeated, an upload is sent whole again with the same
Idempotency-Key, and a server that is not there is reported as unreachable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from convertmesh import AsyncClient, Client, Options, RetryNotice, RetryPolicy
from convertmesh.errors import (
    BadRequestError,
    NotFoundError,
    ServerUnreachableError,
    ServiceUnavailableError,
)
from convertmesh.retry import parse_retry_after
from launcher.nats import free_port
from tests.client.loopback import Answer, Loopback

JOB = {"jobId": "j1", "status": "completed", "results": {"files": [], "archive": None}}
BUSY = {"error": "The service is temporarily unavailable; retry later.", "code": "UNAVAILABLE"}
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05)


def busy(seconds: str = "1") -> Answer:
    return Answer.json(503, {**BUSY, "detail": ""}, **{"Retry-After": seconds})


def test_503_with_retry_after_is_waited_out_then_succeeds() -> None:
    notices: list[RetryNotice] = []
    with (
        Loopback([busy("1"), Answer.json(200, JOB)]) as server,
        Client(server.url, "k", on_retry=notices.append) as client,
    ):
        job = client.get_job("j1")
    assert job.status == "completed"
    assert [s.path for s in server.seen] == ["/api/jobs/j1", "/api/jobs/j1"]
    assert [(n.attempt, n.delay) for n in notices] == [(1, 1.0)]
    assert "503" in notices[0].reason


async def test_async_client_honours_retry_after_the_same_way() -> None:
    notices: list[RetryNotice] = []
    answers = [
        Answer.json(429, {"error": "Too many", "code": "RATE_LIMITED"}, **{"Retry-After": "1"})
    ]
    with Loopback([*answers, Answer.json(200, JOB)]) as server:
        async with AsyncClient(server.url, "k", on_retry=notices.append) as client:
            job = await client.get_job("j1")
    assert job.id == "j1"
    assert len(server.seen) == 2
    assert [(n.attempt, n.delay) for n in notices] == [(1, 1.0)]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 415, 422])
def test_4xx_is_never_retried(status: int) -> None:
    body = {"error": "No.", "code": "X", "detail": "", "fields": [], "meta": {}}
    with (
        Loopback([Answer.json(status, body)]) as server,
        Client(server.url, "k", retry=FAST) as client,
        pytest.raises(Exception) as raised,
    ):
        client.get_job("j1")
    assert len(server.seen) == 1
    assert getattr(raised.value, "status", None) == status


def test_upload_is_sent_whole_again_with_the_same_idempotency_key(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(bytes(range(256)) * 8000)  # 2 MB: more than one chunk
    answers = [
        Answer.json(200, {"jobs": [], "pagination": {"total": 0}}),  # the key check
        busy("0"),
        Answer.json(200, {"jobId": "j9", "status": "pending"}),
    ]
    with Loopback(answers) as server, Client(server.url, "k", retry=FAST) as client:
        job_id = client.create_job([photo], options=Options(format="webp"))
    assert job_id == "j9"
    assert server.seen[0].path == "/api/jobs?limit=1"  # a large upload checks the key first
    posts = [s for s in server.seen if s.method == "POST"]
    assert len(posts) == 2
    assert posts[0].body_bytes == posts[1].body_bytes > photo.stat().st_size
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert posts[0].headers["Content-Length"] == str(posts[0].body_bytes)


def test_a_long_retry_after_is_not_waited_for() -> None:
    with (
        Loopback([busy("3600")]) as server,
        Client(server.url, "k", retry=FAST) as client,
        pytest.raises(ServiceUnavailableError) as raised,
    ):
        client.get_job("j1")
    assert raised.value.retry_after == 3600.0
    assert len(server.seen) == 1


def test_retries_stop_after_the_last_attempt() -> None:
    with (
        Loopback([busy("0")]) as server,
        Client(server.url, "k", retry=FAST) as client,
        pytest.raises(ServiceUnavailableError),
    ):
        client.list_jobs()
    assert len(server.seen) == FAST.attempts


def test_a_server_that_is_not_there_is_unreachable() -> None:
    notices: list[RetryNotice] = []
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, "k", retry=FAST, on_retry=notices.append) as client,
        pytest.raises(ServerUnreachableError) as raised,
    ):
        client.get_job("j1")
    assert "connection refused" in str(raised.value)
    assert len(notices) == FAST.attempts - 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(later, now=now) == 7.0
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0


def test_policy_retries_gateway_errors_only_when_a_repeat_is_harmless() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.after_status(1, 502, None, idempotent=True) is not None
    assert policy.after_status(1, 502, None, idempotent=False) is None
    assert policy.after_status(1, 503, 2.0, idempotent=False) == 2.0
    assert policy.after_status(3, 503, 2.0, idempotent=True) is None
    assert policy.after_transport_error(1, sent=False, idempotent=False) is not None
    assert policy.after_transport_error(1, sent=True, idempotent=False) is None


def test_not_found_job_raises_the_typed_error() -> None:
    body = {"error": "Not found.", "code": "NOT_FOUND", "detail": ""}
    with (
        Loopback([Answer.json(404, body)]) as server,
        Client(server.url, "k") as client,
        pytest.raises(NotFoundError) as raised,
    ):
        client.get_job("nope")
    assert raised.value.describe() == "GET /api/jobs/nope answered 404 NOT_FOUND: Not found."


def test_bad_request_lists_its_fields() -> None:
    body = {
        "error": "2 fields are invalid: formats, resize.",
        "code": "INVALID_FIELD",
        "detail": "",
        "fields": [
            {"field": "formats", "message": "must have 2 entries, one per file"},
            {"field": "resize", "message": "must be one of original, website"},
        ],
        "meta": {},
    }
    with (
        Loopback([Answer.json(400, body)]) as server,
        Client(server.url, "k") as client,
        pytest.raises(BadRequestError) as raised,
    ):
        client.list_jobs()
    assert raised.value.fields == {
        "formats": "must have 2 entries, one per file",
        "resize": "must be one of original, website",
    }


async def test_async_upload_is_streamed_and_resent_whole(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mov"
    clip.write_bytes(bytes(range(256)) * 12000)  # 3 MB
    progress: list[tuple[int, int, int]] = []
    answers = [
        Answer.json(200, {"jobs": [], "pagination": {"total": 0}}),
        busy("0"),
        Answer.json(200, {"jobId": "j2", "status": "pending"}),
    ]
    with Loopback(answers) as server:
        async with AsyncClient(server.url, "k", retry=FAST) as client:
            job_id = await client.create_job(
                [clip], options=Options(format="mp4"), on_upload=lambda *p: progress.append(p)
            )
    assert job_id == "j2"
    posts = [s for s in server.seen if s.method == "POST"]
    assert len(posts) == 2 and posts[0].body_bytes == posts[1].body_bytes > clip.stat().st_size
    assert b'name="format"\r\n\r\nmp4' in posts[0].body_head
    assert progress[-1] == (0, clip.stat().st_size, clip.stat().st_size)
    assert len(progress) > 3  # reported chunk by chunk, not once at the end
