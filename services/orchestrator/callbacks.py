"""Signed callbacks: which events a job emits, and queueing them for delivery.

A result that finishes a file emits `conversion.progress`; one that finishes the job emits
`conversion.completed` or `conversion.failed` (cancelled jobs emit nothing: the caller asked for
it). Events are published to the CALLBACKS stream, never sent inline, so a slow or dead receiver
cannot slow job processing; `services.orchestrator.delivery` sends them. Each event's id is
derived from the job, type and file, and is its `Nats-Msg-Id`: a replayed result queues nothing
new, and every retry of one event carries the same envelope id for the receiver to deduplicate.

Without a `callbackSecret` the callback is sent unsigned (Convertly accepts a bare callbackUrl);
receivers that want authenticity set a secret.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext

from mesh import jobjson, tracing
from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks, LinkSigner
from mesh.settings import Env
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import statuses, urlguard

COMPLETED = "conversion.completed"
FAILED = "conversion.failed"
PROGRESS = "conversion.progress"
MAX_SECRET_LENGTH = 256

_EVENT_NAMESPACE = uuid.UUID("2b7d4c1e-93a4-4f0b-8d55-0c6a1f3e9b27")
_TERMINAL_EVENTS = {
    jobs_pb2.JOB_STATUS_COMPLETED: COMPLETED,
    jobs_pb2.JOB_STATUS_FAILED: FAILED,
}


def _delays(env: Env, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.raw("CALLBACK_RETRY_DELAYS")
    if raw is None:
        return default  # set but empty: no retries
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        env.problem("CALLBACK_RETRY_DELAYS", f"must be seconds like '5,25', got {raw!r}")
        return default
    if any(delay < 0 for delay in delays):
        env.problem("CALLBACK_RETRY_DELAYS", f"must not be negative, got {raw!r}")
        return default
    return delays


@dataclass(frozen=True)
class CallbackSettings:
    # Before attempts 2, 3, ...: attempts = len(retry_delays) + 1; each gets +-20 % jitter.
    retry_delays: tuple[float, ...] = (5.0, 25.0)
    timeout_seconds: float = 10.0
    # Base of the `downloadUrl`s in the event's `data`, as clients reach the gateway.
    public_base_url: str = "http://127.0.0.1:8080"
    allow: urlguard.Allowlist = field(default_factory=urlguard.Allowlist)
    concurrency: int = 32
    # Signs the `downloadUrl`s in the event's `data` (the gateway verifies them).
    signer: LinkSigner = field(default_factory=LinkSigner.ephemeral)

    @property
    def attempts(self) -> int:
        return len(self.retry_delays) + 1

    @classmethod
    def read(cls, env: Env) -> CallbackSettings:
        return cls(
            retry_delays=_delays(env, cls.retry_delays),
            timeout_seconds=env.number(
                "CALLBACK_TIMEOUT_SECONDS", cls.timeout_seconds, positive=True
            ),
            public_base_url=env.text("PUBLIC_BASE_URL", cls.public_base_url).rstrip("/"),
            allow=urlguard.Allowlist.parse(
                env.text("OUTBOUND_ALLOW_HOSTS", ""), only=env.flag("OUTBOUND_ALLOW_ONLY")
            ),
            concurrency=env.integer("CALLBACK_CONCURRENCY", cls.concurrency, minimum=1),
            signer=LinkSigner.read(env),
        )

    @property
    def links(self) -> DownloadLinks:
        return DownloadLinks(self.public_base_url, self.signer)


@dataclass(frozen=True)
class Event:
    tenant: str
    job_id: str
    type: str
    event_id: str
    created: int
    # The job when the event happened, as the envelope's `data` shows it.
    job: jobs_pb2.Job

    def headers(self) -> dict[str, str]:
        return {
            "Nats-Msg-Id": self.event_id,
            "Mesh-Tenant": self.tenant,
            "Mesh-Job": self.job_id,
            "Mesh-Event": self.type,
            "Mesh-Created": str(self.created),
        }

    @classmethod
    def from_message(cls, headers: Mapping[str, str], data: bytes) -> Event:
        return cls(
            tenant=headers["Mesh-Tenant"],
            job_id=headers["Mesh-Job"],
            type=headers["Mesh-Event"],
            event_id=headers["Nats-Msg-Id"],
            created=int(headers["Mesh-Created"]),
            job=jobs_pb2.Job.FromString(data),
        )

    def envelope(self, links: DownloadLinks) -> bytes:
        """The raw body that is sent and signed."""
        body: dict[str, Any] = {
            "id": self.event_id,
            "type": self.type,
            "created": self.created,
            "data": jobjson.render_job(self.job, links),
        }
        return json.dumps(body, separators=(",", ":")).encode()


def event_id(tenant: str, job_id: str, event_type: str, file_index: int | None = None) -> str:
    name = f"{tenant}\x00{job_id}\x00{event_type}\x00{'' if file_index is None else file_index}"
    return f"evt_{uuid.uuid5(_EVENT_NAMESPACE, name)}"


def events_for(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> list[Event]:
    """The events a result emits, judged from the record after the result was applied.

    Depends only on (record, result), so calling it again for a redelivered result yields the
    same events and ids.
    """
    job = record.job
    if not record.callback_url or result.kind not in statuses.FINAL_RESULTS:
        return []
    if not 0 <= result.file_index < len(job.files):
        return []
    if job.files[result.file_index].status not in statuses.TERMINAL_FILE:
        return []
    created = int(time.time())
    snapshot = jobs_pb2.Job()
    snapshot.CopyFrom(job)
    tenant, job_id = job.tenant, job.job_id
    events = [
        Event(
            tenant,
            job_id,
            PROGRESS,
            event_id(tenant, job_id, PROGRESS, result.file_index),
            created,
            snapshot,
        )
    ]
    terminal = _TERMINAL_EVENTS.get(job.status)
    if terminal is not None:
        events.append(
            Event(tenant, job_id, terminal, event_id(tenant, job_id, terminal), created, snapshot)
        )
    return events


async def enqueue(js: JetStreamContext, events: list[Event]) -> None:
    for event in events:
        await js.publish(
            streams.CALLBACK_SUBJECT,
            event.job.SerializeToString(),
            headers=tracing.inject(event.headers()),
        )


def on_change(
    js: JetStreamContext,
) -> Callable[[state_pb2.JobRecord, tasks_pb2.Result], Awaitable[None]]:
    """The hook `results.consume_results` calls after a result changed a job."""

    async def emit(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> None:
        await enqueue(js, events_for(record, result))

    return emit


def validate_callback(url: str, secret: str, allow: urlguard.Allowlist) -> None:
    """At job creation: a callbackUrl whose syntax and any literal address the guard accepts.
    Nothing is resolved here: the name is resolved, checked and pinned at each delivery
    attempt (`delivery.attempt`), where a failure is a failed attempt, retried on schedule."""
    if len(secret) > MAX_SECRET_LENGTH:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"callbackSecret must be at most {MAX_SECRET_LENGTH} characters.",
            fields={"callbackSecret": f"at most {MAX_SECRET_LENGTH} characters"},
        )
    if url:
        urlguard.screen(url, allow, "callbackUrl")
