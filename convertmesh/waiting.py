"""Waiting for a job: the decisions, shared by both clients.

The job's server-sent events (`GET /api/jobs/{id}/events`) are followed first. A stream that
drops is reopened with `Last-Event-ID`, so nothing is seen twice; a server without the events
route (404, 405, 406, 501, or an answer that is not an event stream), or a stream that keeps
dropping, is polled instead, with a growing interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from convertmesh.errors import WaitTimeoutError
from convertmesh.models import Job
from convertmesh.sse import Event, EventParser

JobProgress = Callable[[Job], None]

NO_EVENTS_STATUSES = frozenset({404, 405, 406, 501})
MAX_STREAM_FAILURES = 3
FIRST_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 2.0
# The server sends a keepalive comment every 15 s; silence for longer means a dead stream.
STREAM_READ_SECONDS = 45.0


class Waiter:
    def __init__(self, job_id: str, on_progress: JobProgress | None, timeout: float | None):
        self.job_id = job_id
        self.on_progress = on_progress
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.polling = False
        self.parser = EventParser()
        self.failures = 0
        self.poll_delay = FIRST_POLL_SECONDS
        self.last: Job | None = None
        self.needs_fetch = False  # an `end` event came without a final job event

    def event_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.parser.last_id:
            headers["Last-Event-ID"] = self.parser.last_id
        return headers

    def takes_stream(self, status: int, content_type: str) -> bool:
        """False (and polling from now on) for a server that offers no event stream."""
        if status in NO_EVENTS_STATUSES or "text/event-stream" not in content_type:
            self.polling = True
            return False
        return True

    def feed(self, chunk: bytes) -> Job | None:
        """The finished job once the stream says so, else None."""
        for event in self.parser.feed(chunk):
            self.failures = 0
            finished = self._event(event)
            if finished is not None:
                return finished
        return None

    def _event(self, event: Event) -> Job | None:
        if event.event == "job":
            try:
                job = Job.from_json(json.loads(event.data))
            except ValueError:
                return None
            self.report(job)
            return job if job.finished else None
        if event.event == "end":
            self.needs_fetch = True
        return None

    def stream_ended(self) -> None:
        """The stream closed or broke before the job finished: reopen, or poll after a few
        failures in a row."""
        self.failures += 1
        if self.failures >= MAX_STREAM_FAILURES:
            self.polling = True

    def report(self, job: Job) -> None:
        changed = self.last is None or job.raw != self.last.raw
        self.last = job
        if changed and self.on_progress is not None:
            self.on_progress(job)

    def next_poll_delay(self) -> float:
        delay = self.poll_delay
        self.poll_delay = min(MAX_POLL_SECONDS, self.poll_delay * 1.5)
        if self.deadline is not None:
            delay = max(0.0, min(delay, self.deadline - time.monotonic()))
        return delay

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            status = self.last.status if self.last else "unknown"
            raise WaitTimeoutError(self.job_id, self.timeout or 0.0, status)
