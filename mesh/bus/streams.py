"""Names and configuration of every JetStream stream and bucket, created idempotently.

Layout:
- stream TASKS, subjects `tasks.<service>`: work queue, one durable pull consumer per service;
  duplicate window makes dispatch idempotent by `Nats-Msg-Id` (the task id).
- stream RESULTS, subjects `results.<service>`: work queue, consumed by the orchestrators.
- stream CALLBACKS, subject `callbacks.events`: work queue of callback events (the job proto,
  metadata in headers), deduplicated by event id; consumed by the orchestrators' deliverers.
- KV `jobs`: job records, compare-and-set on the revision (the orchestrator's own).
- KV `settled`: one key per task that is no longer wanted (done, or its job cancelled), put by
  the orchestrator; a worker reads its task's key before and after converting.
- KV `uploads`: blob id -> owner and sniffed type, so a job can only use its tenant's blobs.
- Object store `blobs`: sources (`src/<id>`) and outputs (`out/<job>/<index>`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from mesh import blobs
from mesh.settings import Env

TASKS_STREAM = "TASKS"
RESULTS_STREAM = "RESULTS"
CALLBACKS_STREAM = "CALLBACKS"
CALLBACK_SUBJECT = "callbacks.events"
JOBS_BUCKET = "jobs"
UPLOADS_BUCKET = "uploads"
SETTLED_BUCKET = "settled"
BLOBS_BUCKET = "blobs"


def task_subject(service: str) -> str:
    return f"tasks.{service}"


def result_subject(service: str) -> str:
    return f"results.{service}"


@dataclass(frozen=True)
class Retention:
    """How long things live. Jobs, sources and outputs share one retention (API default 24 h),
    applied as the max age of every stream and bucket, so expired data is really released."""

    seconds: float = 24 * 3600
    duplicate_window_seconds: float = 120.0

    @classmethod
    def read(cls, env: Env) -> Retention:
        seconds = env.number("RETENTION_SECONDS", cls.seconds, positive=True)
        # JetStream wants the duplicate window no longer than the max age.
        return cls(seconds, min(cls.duplicate_window_seconds, seconds))


async def ensure(js: JetStreamContext, retention: Retention) -> None:
    """Creates every stream and bucket this mesh uses; harmless when they exist."""
    # Work queues, all deduplicated by Nats-Msg-Id; new tasks are refused, never old ones
    # dropped, when the task stream is full.
    for name, prefix, discard in (
        (TASKS_STREAM, "tasks", DiscardPolicy.NEW),
        (RESULTS_STREAM, "results", DiscardPolicy.OLD),
        (CALLBACKS_STREAM, "callbacks", DiscardPolicy.OLD),
    ):
        await _ensure_stream(
            js,
            StreamConfig(
                name=name,
                subjects=[f"{prefix}.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=retention.duplicate_window_seconds,
                max_age=retention.seconds,
                discard=discard,
            ),
        )
    for bucket in (JOBS_BUCKET, UPLOADS_BUCKET, SETTLED_BUCKET):
        try:
            await js.key_value(bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, ttl=retention.seconds, storage=StorageType.FILE
                )
            )
        await _apply_max_age(js, f"KV_{bucket}", retention.seconds)
    await blobs.ensure_bucket(js, BLOBS_BUCKET, ttl_seconds=retention.seconds)
    await _apply_max_age(js, f"OBJ_{BLOBS_BUCKET}", retention.seconds)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return
    if info.config.max_age != config.max_age:
        await _apply_max_age(js, config.name or "", config.max_age or 0)


async def _apply_max_age(js: JetStreamContext, stream: str, seconds: float) -> None:
    """Makes an existing stream follow the configured retention (it may have changed)."""
    info = await js.stream_info(stream)
    if info.config.max_age == seconds:
        return
    config = info.config
    config.max_age = seconds
    if config.duplicate_window and config.duplicate_window > seconds:
        config.duplicate_window = seconds
    await js.update_stream(config)


def job_key(tenant: str, job_id: str) -> str:
    """KV key of a job. Tenants and job ids are restricted to KV-safe characters."""
    return f"{tenant}.{job_id}"


def upload_key(blob_id: str) -> str:
    return blob_id


def settled_key(task_id: str) -> str:
    """KV key saying a task is no longer wanted. Task ids are KV-safe (job id and numbers)."""
    return task_id
