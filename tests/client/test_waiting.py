"""Waiting for a job: the event stream is followed, reopened with Last-Event-ID when it drops,
and replaced by polling on a server without it; a download that breaks resumes with Range."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convertmesh import AsyncClient, Client, Job, RetryPolicy
from convertmesh.sse import EventParser
from tests.client.loopback import Answer, Loopback


def job(status: str, progress: int) -> dict[str, Any]:
    files = [{"index": 0, "filename": "a.jpg", "status": status, "progress": progress}]
    return {"jobId": "j1", "status": status, "progress": progress, "results": {"files": files}}


def event(name: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()


def stream(*events: bytes) -> Answer:
    def chunks() -> Iterator[bytes]:
        yield b": keepalive\n\n"
        yield from events

    return Answer(200, chunks, {"Content-Type": "text/event-stream"})


def test_event_stream_reopened_after_a_drop_with_last_event_id() -> None:
    seen: list[int] = []
    answers = [
        stream(event("job", job("processing", 40), 7)),  # then the connection closes
        stream(event("job", job("completed", 100), 9), event("end", {"jobId": "j1"}, 9)),
    ]
    with Loopback(answers) as server, Client(server.url, "k") as client:
        done = client.wait("j1", on_progress=lambda j: seen.append(j.progress))
    assert done.status == "completed"
    assert seen == [40, 100]
    assert server.seen[1].headers.get("Last-Event-ID") == "7"
    assert "Last-Event-ID" not in server.seen[0].headers


async def test_a_server_without_events_is_polled() -> None:
    seen: list[str] = []
    answers = [
        Answer.json(404, {"error": "Not Found"}),
        Answer.json(200, job("processing", 10)),
        Answer.json(200, job("completed", 100)),
    ]
    with Loopback(answers) as server:
        async with AsyncClient(server.url, "k") as client:
            done = await client.wait("j1", on_progress=lambda j: seen.append(j.status))
    assert done.status == "completed"
    assert seen == ["processing", "completed"]
    assert [s.path for s in server.seen] == ["/api/jobs/j1/events", "/api/jobs/j1", "/api/jobs/j1"]


def test_both_shapes_of_a_cancelled_job_are_finished() -> None:
    older = Job.from_json({"jobId": "a", "status": "cancelled"})
    newer = Job.from_json({"jobId": "b", "status": "failed", "cancelled": True})
    assert older.finished and older.cancelled
    assert newer.finished and newer.cancelled


def test_event_parser_handles_split_chunks_crlf_and_multiline_data() -> None:
    parser = EventParser()
    raw = b'id: 3\r\nevent: job\r\ndata: {"a":\r\ndata: 1}\r\n\r\n: comment\n\n'
    events = [e for i in range(len(raw)) for e in parser.feed(raw[i : i + 1])]
    assert [(e.event, e.data, e.id) for e in events] == [("job", '{"a":\n1}', "3")]


def test_a_broken_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    content = bytes(range(256)) * 4096  # 1 MiB
    etag = '"abc"'
    answers = [
        Answer(200, content, {"ETag": etag, "Content-Type": "image/png"}, cut_after=300_000),
        Answer(
            206,
            content[300_000:],
            {"ETag": etag, "Content-Range": f"bytes 300000-{len(content) - 1}/{len(content)}"},
        ),
    ]
    with (
        Loopback(answers) as server,
        Client(server.url, "k", retry=RetryPolicy(backoff=0.01)) as client,
    ):
        path = client.download(f"{server.url}/api/jobs/j1/files/0", tmp_path / "out.png")
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest()
    assert server.seen[1].headers["Range"].startswith("bytes=")
    resumed_from = int(server.seen[1].headers["Range"][6:-1])
    assert resumed_from == 300_000
    assert not (tmp_path / ".out.png.part").exists()


async def test_a_link_downloaded_into_a_directory_takes_the_servers_name(tmp_path: Path) -> None:
    disposition = "attachment; filename=\"_.webp\"; filename*=UTF-8''caf%C3%A9.webp"
    answers = [Answer(200, b"RIFF....WEBP", {"Content-Disposition": disposition})]
    with Loopback(answers) as server:
        async with AsyncClient(server.url, "k") as client:
            path = await client.download(f"{server.url}/api/jobs/j/files/0?signature=x", tmp_path)
    assert path == tmp_path / "café.webp"
    assert path.read_bytes() == b"RIFF....WEBP"
