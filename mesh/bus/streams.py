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

Every one of them is kept on `NATS_REPLICAS` servers (default 1); existing ones are scaled to
it when it changes (their consumers follow the stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError

from mesh import blobs
from mesh.errors import MeshError, Reason
from mesh.settings import Env

log = logging.getLogger(__name__)

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


def read_replicas(env: Env) -> int:
    """NATS_REPLICAS: on how many servers every stream and bucket is kept."""
    return env.integer("NATS_REPLICAS", 1, minimum=1, maximum=5)


# JetStream's answers when it cannot place the replicas: no suitable peers for placement,
# insufficient resources, replicas > 1 not supported in non-clustered mode.
_PLACEMENT_ERRORS = frozenset({10005, 10023, 10074})


class ReplicasError(RuntimeError):
    """The NATS servers cannot hold NATS_REPLICAS copies of a stream."""


async def ensure(js: JetStreamContext, retention: Retention, replicas: int = 1) -> None:
    """Creates every stream and bucket this mesh uses on `replicas` servers; harmless when
    they exist. Raises ReplicasError when the cluster has fewer servers than `replicas`."""
    try:
        await _ensure(js, retention, replicas)
    except APIError as error:
        if error.err_code not in _PLACEMENT_ERRORS:
            raise
        raise ReplicasError(
            f"NATS_REPLICAS={replicas} needs a JetStream cluster of at least {replicas} "
            f"servers; NATS answered: {error.description} (start more servers or lower "
            "NATS_REPLICAS)"
        ) from error


async def ensure_when_ready(
    js: JetStreamContext, retention: Retention, replicas: int = 1, within: float = 120.0
) -> None:
    """`ensure`, tried again while NATS cannot answer yet (a cluster electing a leader after
    losing a node, a broker restarting) for up to `within` seconds: a service that starts
    meanwhile waits instead of exiting. ReplicasError is final at once."""
    deadline = time.monotonic() + within
    delay = 0.5
    while True:
        try:
            await ensure(js, retention, replicas)
            return
        except ReplicasError:
            raise
        except (nats.errors.Error, TimeoutError, MeshError) as error:
            # MeshError: the blob bucket's check reports the broker as UNAVAILABLE.
            final = isinstance(error, MeshError) and error.reason is not Reason.UNAVAILABLE
            if final or time.monotonic() + delay > deadline:
                raise
            log.warning("streams not ready yet (%r); trying again in %g s", error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _ensure(js: JetStreamContext, retention: Retention, replicas: int) -> None:
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
                num_replicas=replicas,
            ),
        )
    for bucket in (JOBS_BUCKET, UPLOADS_BUCKET, SETTLED_BUCKET):
        try:
            await js.key_value(bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=retention.seconds,
                    storage=StorageType.FILE,
                    replicas=replicas,
                )
            )
        await _apply(js, f"KV_{bucket}", retention.seconds, replicas)
    await blobs.ensure_bucket(js, BLOBS_BUCKET, ttl_seconds=retention.seconds, replicas=replicas)
    await _apply(js, f"OBJ_{BLOBS_BUCKET}", retention.seconds, replicas)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return
    await _apply(js, config.name or "", config.max_age or 0, config.num_replicas or 1)


async def _apply(js: JetStreamContext, stream: str, seconds: float, replicas: int) -> None:
    """Makes an existing stream follow the configured retention and replicas (either may have
    changed since it was created)."""
    info = await js.stream_info(stream)
    config = info.config
    if config.max_age == seconds and (config.num_replicas or 1) == replicas:
        return
    config.max_age = seconds
    config.num_replicas = replicas
    if config.duplicate_window and config.duplicate_window > seconds:
        config.duplicate_window = seconds
    try:
        await js.update_stream(config)
    except nats.errors.TimeoutError:
        # Scaling moves the stream onto new servers, which can outlast one API request, and
        # every service applies the same change at start: wait for it to be in place.
        await _wait_applied(js, stream, seconds, replicas)


async def _wait_applied(
    js: JetStreamContext, stream: str, seconds: float, replicas: int, within: float = 60.0
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            config = (await js.stream_info(stream)).config
            if config.max_age == seconds and (config.num_replicas or 1) == replicas:
                return
        except nats.errors.TimeoutError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise ReplicasError(f"stream {stream} did not move to {replicas} replicas in time")
        await asyncio.sleep(0.5)


def job_key(tenant: str, job_id: str) -> str:
    """KV key of a job. Tenants and job ids are restricted to KV-safe characters."""
    return f"{tenant}.{job_id}"


def upload_key(blob_id: str) -> str:
    return blob_id


def settled_key(task_id: str) -> str:
    """KV key saying a task is no longer wanted. Task ids are KV-safe (job id and numbers)."""
    return task_id
