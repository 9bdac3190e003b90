"""Orchestrator settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mesh.settings import env_int
from services.orchestrator.callbacks import CallbackSettings


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    max_files_per_job: int = 100
    max_active_jobs_per_tenant: int = 50
    max_upload_bytes: int = 2 * 1024**3
    retention_seconds: int = 24 * 3600
    log_level: str = "INFO"
    # The archive workers can create RAR only with the operator's `rar` binary (same setting).
    rar_available: bool = False
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            nats_url=os.environ.get("NATS_URL", cls.nats_url),
            grpc_host=os.environ.get("GRPC_HOST", cls.grpc_host),
            grpc_port=env_int("GRPC_PORT", cls.grpc_port),
            max_files_per_job=env_int("MAX_FILES_PER_JOB", cls.max_files_per_job),
            max_active_jobs_per_tenant=env_int(
                "MAX_ACTIVE_JOBS_PER_TENANT", cls.max_active_jobs_per_tenant
            ),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            retention_seconds=env_int("RETENTION_SECONDS", cls.retention_seconds),
            log_level=os.environ.get("LOG_LEVEL", cls.log_level),
            rar_available=bool(os.environ.get("ARCHIVE_RAR_BINARY")),
            callbacks=CallbackSettings.from_env(),
        )
