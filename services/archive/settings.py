"""Archive worker settings: the shared worker settings plus the archive limits."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import env_number
from services.archive.limits import ArchiveLimits


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: ArchiveLimits
    # RAR creation needs the proprietary `rar` binary; without it `rar` output is refused.
    rar_binary: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            worker=WorkerSettings.from_env("archive", task_seconds=600, task_memory_mb=1024),
            limits=ArchiveLimits(
                max_entries=int(env_number("ARCHIVE_MAX_ENTRIES", ArchiveLimits.max_entries)),
                max_total_bytes=int(
                    env_number("ARCHIVE_MAX_TOTAL_BYTES", ArchiveLimits.max_total_bytes)
                ),
                max_entry_bytes=int(
                    env_number("ARCHIVE_MAX_ENTRY_BYTES", ArchiveLimits.max_entry_bytes)
                ),
                max_ratio=env_number("ARCHIVE_MAX_RATIO", ArchiveLimits.max_ratio),
            ),
            rar_binary=os.environ.get("ARCHIVE_RAR_BINARY") or None,
        )
