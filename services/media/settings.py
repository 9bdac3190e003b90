"""Media worker settings: the shared worker settings plus the media limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import Env, load
from services.media.limits import MediaLimits


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: MediaLimits

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return load(cls.read, env)

    @classmethod
    def read(cls, env: Env) -> Settings:
        defaults = MediaLimits()
        return cls(
            worker=WorkerSettings.read(
                env, "media", task_seconds=3600, task_memory_mb=3072, task_scratch_mb=8192
            ),
            limits=MediaLimits(
                max_duration_seconds=env.number(
                    "MEDIA_MAX_DURATION_SECONDS", defaults.max_duration_seconds, positive=True
                ),
                max_width=env.integer("MEDIA_MAX_WIDTH", defaults.max_width, minimum=1),
                max_height=env.integer("MEDIA_MAX_HEIGHT", defaults.max_height, minimum=1),
                max_streams=env.integer("MEDIA_MAX_STREAMS", defaults.max_streams, minimum=1),
            ),
        )
