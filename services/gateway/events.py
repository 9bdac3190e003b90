"""`GET /api/jobs/{id}/events`: job progress as server-sent events, until the job ends.

Each change of the job (from the orchestrator's WatchJob stream, itself fed by the KV update
stream) becomes a `job` event; each file whose status or progress moved becomes a `file` event
first. Event ids are the job's update time in nanoseconds: a client reconnecting with
`Last-Event-ID` gets only what changed after that, and nothing twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mesh import jobjson
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks
from services.gateway import auth, paths
from services.gateway.client import JobClient

KEEPALIVE_SECONDS = 15.0
TERMINAL = frozenset(
    {jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELLED}
)


def format_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in json.dumps(data).splitlines())
    return ("\n".join(lines) + "\n\n").encode()


def event_id(job: jobs_pb2.Job) -> int:
    return int(job.updated_at.ToNanoseconds())


def _file_marks(job: jobs_pb2.Job) -> list[tuple[int, int]]:
    return [(item.status, item.progress) for item in job.files]


async def _with_keepalive(
    updates: AsyncIterator[jobs_pb2.Job],
) -> AsyncIterator[jobs_pb2.Job | None]:
    """The updates, with None whenever nothing arrived for a while (a comment keeps proxies
    from closing an idle stream)."""
    iterator = aiter(updates)
    pending: asyncio.Task[jobs_pb2.Job] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield None
                continue
            try:
                job = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield job
    finally:
        if pending is not None:
            pending.cancel()


async def stream_events(
    updates: AsyncIterator[jobs_pb2.Job], links: DownloadLinks, resume_after: int
) -> AsyncIterator[bytes]:
    previous: list[tuple[int, int]] = []
    async for job in _with_keepalive(updates):
        if job is None:
            yield b": keepalive\n\n"
            continue
        current = event_id(job)
        if current <= resume_after and job.status not in TERMINAL:
            previous = _file_marks(job)
            continue
        marks = _file_marks(job)
        for index, mark in enumerate(marks):
            if index >= len(previous) or previous[index] != mark:
                yield format_event("file", jobjson.render_file(job, job.files[index], links))
        previous = marks
        yield format_event("job", jobjson.render_job(job, links), current)
        if job.status in TERMINAL:
            end: dict[str, Any] = {
                "jobId": job.job_id,
                "status": jobjson.public_job_status(job.status),
            }
            if job.status == jobs_pb2.JOB_STATUS_CANCELLED:
                end["cancelled"] = True
            yield format_event("end", end)
            return


async def job_events(request: Request) -> Response:
    tenant = auth.tenant_for(request, request.app.state.settings.api_keys)
    client: JobClient = request.app.state.client
    raw_resume = request.headers.get("last-event-id", "")
    resume_after = paths.whole_number(raw_resume) or 0
    updates = await client.watch_job(tenant, paths.job_id(request))
    links = DownloadLinks(str(request.base_url), request.app.state.settings.links)
    return StreamingResponse(
        stream_events(updates, links, resume_after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
