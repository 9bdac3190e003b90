"""Names and configuration of every JetStream stream and bucket, created idempotently.

Layout:
- stream TASKS, subjects `tasks.<service>`: work queue, one durable pull consumer per service;
  duplicate window makes dispatch idempotent by `Nats-Msg-Id` (the task id).
- stream RESULTS, subjects `results.<service>`: work queue, consumed by the orchestrators.
- stream CALLBACKS, subject `callbacks.events`: work queue of callback events (the job proto,
  metadata in headers), deduplicated by event id; consumed by the orchestrators' deliverers.
- KV `jobs`: job records, compare-and-set on the revision.
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

TASKS_STREAM = "TASKS"
RESULTS_STREAM = "RESULTS"
CALLBACKS_STREAM = "CALLBACKS"
CALLBACK_SUBJECT = "callbacks.events"
JOBS_BUCKET = "jobs"
UPLOADS_BUCKET = "uploads"
BLOBS_BUCKET = "blobs"
SERVICES = ("image", "media", "archive")


def task_subject(service: str) -> str:
    return f"tasks.{service}"


def result_subject(service: str) -> str:
    return f"results.{service}"


@dataclass(frozen=True)
class Retention:
    """How long things live. Jobs, sources and outputs share one retention (API default 24 h)."""

    seconds: float = 24 * 3600
    duplicate_window_seconds: float = 120.0


async def ensure(js: JetStreamContext, retention: Retention) -> None:
    """Creates every stream and bucket this mesh uses; harmless when they exist."""
    await _ensure_stream(
        js,
        StreamConfig(
            name=TASKS_STREAM,
            subjects=["tasks.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=retention.duplicate_window_seconds,
            max_age=retention.seconds,
            discard=DiscardPolicy.NEW,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=RESULTS_STREAM,
            subjects=["results.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=retention.duplicate_window_seconds,
            max_age=retention.seconds,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=CALLBACKS_STREAM,
            subjects=["callbacks.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=retention.duplicate_window_seconds,
            max_age=retention.seconds,
        ),
    )
    for bucket in (JOBS_BUCKET, UPLOADS_BUCKET):
        try:
            await js.key_value(bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, ttl=retention.seconds, storage=StorageType.FILE
                )
            )
    await blobs.ensure_bucket(js, BLOBS_BUCKET, ttl_seconds=retention.seconds)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)


def job_key(tenant: str, job_id: str) -> str:
    """KV key of a job. Tenants and job ids are restricted to KV-safe characters."""
    return f"{tenant}.{job_id}"


def upload_key(blob_id: str) -> str:
    return blob_id
