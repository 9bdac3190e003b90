"""Orchestrator settings, read once from the environment and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh import blobs, eventloop
from mesh.bus import inline
from mesh.bus.streams import Retention, read_replicas
from mesh.settings import Env, load
from mesh.telemetry import MetricsSettings
from mesh.tracing import TracingSettings
from services.orchestrator.callbacks import CallbackSettings
from services.orchestrator.fetch import FetchLimits


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    max_files_per_job: int = 100
    max_active_jobs_per_tenant: int = 50
    max_upload_bytes: int = 2 * 1024**3
    retention: Retention = field(default_factory=Retention)
    log_level: str = "INFO"
    nats_replicas: int = 1
    # Whether jobs may ask for rar output. The archive workers write it only with the
    # operator's `rar` binary (their ARCHIVE_RAR_BINARY); the operator says so here too.
    rar_available: bool = False
    # How often every replica looks for jobs whose dispatch was interrupted, and how old such
    # a job must be: well inside the task stream's duplicate window (see `redispatch`).
    redispatch_seconds: float = 15.0
    # How long a job's dispatched mark is held to ride on its next write (its result, for a
    # quick job) before it is written alone (`store.JobStore.mark_dispatched`); 0: at once.
    # At most half of `redispatch_seconds`, so the sweep does not take a held mark for an
    # interrupted dispatch.
    dispatch_mark_seconds: float = 2.0
    # How long an UploadBlob stream may send nothing before it is ended (408) and what it
    # stored removed: more than the gateway's UPLOAD_IDLE_SECONDS, the longest pause it lets a
    # client make.
    upload_idle_seconds: float = 120.0
    # How old the newest chunk of a blob write with no meta record must be before the sweeper
    # removes it (a writer killed mid-upload). A live write stores a chunk at least every
    # `blobs.FLUSH_SECONDS` plus the longest pause of its sender, which `upload_idle_seconds`
    # bounds: the grace must exceed both.
    orphan_grace_seconds: float = 600.0
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    event_loop: str = "uvloop"
    traces: TracingSettings = field(default_factory=TracingSettings)
    # A synchronous conversion sent straight to a worker (POST /api/convert of a small file)
    # whose worker says nothing for this long is taken to have died: it goes the durable way.
    sync_inline_silence_seconds: float = 5.0
    # Jobs whose last record and revision the store remembers, so that changing one writes
    # (compare-and-set) without reading it first (0: always read first).
    job_record_cache: int = 4096
    # Revisions of its job one WatchJob call holds while its caller is slow to take them; the
    # oldest are dropped past it (each is the whole record: the end is never lost).
    job_watch_keep: int = 16
    # sourceUrl fetches: at most the upload limit, within these times.
    fetch: FetchLimits = field(default_factory=lambda: FetchLimits(max_bytes=2 * 1024**3))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return load(cls.read, env)

    @classmethod
    def read(cls, env: Env) -> Settings:
        retention = Retention.read(env)
        max_upload_bytes = env.integer("MAX_UPLOAD_BYTES", cls.max_upload_bytes, minimum=1)
        upload_idle = env.number(
            "UPLOAD_STREAM_IDLE_SECONDS", cls.upload_idle_seconds, positive=True
        )
        defaults = FetchLimits(max_bytes=max_upload_bytes)
        redispatch_seconds = _redispatch_seconds(env, retention)
        return cls(
            nats_url=env.text("NATS_URL", cls.nats_url),
            grpc_host=env.text("GRPC_HOST", cls.grpc_host),
            grpc_port=env.integer("GRPC_PORT", cls.grpc_port, minimum=0, maximum=65535),
            max_files_per_job=env.integer("MAX_FILES_PER_JOB", cls.max_files_per_job, minimum=1),
            max_active_jobs_per_tenant=env.integer(
                "MAX_ACTIVE_JOBS_PER_TENANT", cls.max_active_jobs_per_tenant, minimum=1
            ),
            max_upload_bytes=max_upload_bytes,
            retention=retention,
            log_level=env.text("LOG_LEVEL", cls.log_level),
            nats_replicas=read_replicas(env),
            rar_available=env.flag("RAR_OUTPUT_ENABLED"),
            redispatch_seconds=redispatch_seconds,
            dispatch_mark_seconds=_dispatch_mark_seconds(env, redispatch_seconds),
            upload_idle_seconds=upload_idle,
            orphan_grace_seconds=env.number(
                "ORPHAN_CHUNK_GRACE_SECONDS",
                cls.orphan_grace_seconds,
                minimum=max(2 * blobs.FLUSH_SECONDS, upload_idle + blobs.FLUSH_SECONDS),
            ),
            callbacks=CallbackSettings.read(env),
            metrics=MetricsSettings.read(env),
            event_loop=eventloop.read(env),
            traces=TracingSettings.read(env),
            sync_inline_silence_seconds=env.number(
                "SYNC_INLINE_SILENCE_SECONDS",
                cls.sync_inline_silence_seconds,
                minimum=3 * inline.BEAT_SECONDS,
            ),
            job_record_cache=env.integer("JOB_RECORD_CACHE", cls.job_record_cache, minimum=0),
            job_watch_keep=env.integer("JOB_WATCH_KEEP", cls.job_watch_keep, minimum=1),
            fetch=FetchLimits(
                max_bytes=max_upload_bytes,
                total_seconds=env.number(
                    "SOURCE_URL_TIMEOUT_SECONDS", defaults.total_seconds, positive=True
                ),
                idle_seconds=env.number(
                    "SOURCE_URL_IDLE_SECONDS", defaults.idle_seconds, positive=True
                ),
                min_bytes_per_second=env.number(
                    "SOURCE_URL_MIN_BYTES_PER_SECOND", defaults.min_bytes_per_second, minimum=0
                ),
            ),
        )


def _redispatch_seconds(env: Env, retention: Retention) -> float:
    window = retention.duplicate_window_seconds
    default = min(Settings.redispatch_seconds, window / 4)
    seconds = env.number("REDISPATCH_SECONDS", default, positive=True)
    if seconds > window / 4:
        env.problem(
            "REDISPATCH_SECONDS",
            f"must be at most a quarter of the {window:g} s duplicate window, so that a task "
            "dispatched again is recognised as a repeat",
        )
    return seconds


def _dispatch_mark_seconds(env: Env, redispatch_seconds: float) -> float:
    default = min(Settings.dispatch_mark_seconds, redispatch_seconds / 2)
    seconds = env.number("DISPATCH_MARK_SECONDS", default, minimum=0)
    if seconds > redispatch_seconds / 2:
        env.problem(
            "DISPATCH_MARK_SECONDS",
            f"must be at most half of REDISPATCH_SECONDS ({redispatch_seconds:g} s), so that "
            "the sweep does not take a held mark for an interrupted dispatch",
        )
    return seconds
