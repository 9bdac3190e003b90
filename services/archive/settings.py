"""Archive worker settings: the shared worker settings plus the archive limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import Env, load
from services.archive.limits import ArchiveLimits
from services.archive.pipeline import TRACED_MEMBERS


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: ArchiveLimits
    # RAR creation needs the proprietary `rar` binary; without it `rar` output is refused.
    rar_binary: str | None = None
    # How many members of a PACK get a span each (the pack stage says how many did).
    trace_members: int = TRACED_MEMBERS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return load(cls.read, env)

    @classmethod
    def read(cls, env: Env) -> Settings:
        defaults = ArchiveLimits()
        return cls(
            worker=WorkerSettings.read(
                env, "archive", task_seconds=600, task_memory_mb=1024, task_scratch_mb=24576
            ),
            limits=ArchiveLimits(
                max_entries=env.integer("ARCHIVE_MAX_ENTRIES", defaults.max_entries, minimum=1),
                max_total_bytes=env.integer(
                    "ARCHIVE_MAX_TOTAL_BYTES", defaults.max_total_bytes, minimum=1
                ),
                max_entry_bytes=env.integer(
                    "ARCHIVE_MAX_ENTRY_BYTES", defaults.max_entry_bytes, minimum=1
                ),
                max_ratio=env.number("ARCHIVE_MAX_RATIO", defaults.max_ratio, positive=True),
            ),
            rar_binary=env.optional("ARCHIVE_RAR_BINARY"),
            trace_members=env.integer("ARCHIVE_TRACE_MEMBERS", cls.trace_members, minimum=0),
        )
