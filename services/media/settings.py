"""Media worker settings: the shared worker settings plus the media limits."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import env_number
from services.media.limits import MediaLimits


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: MediaLimits

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            worker=WorkerSettings.from_env("media", task_seconds=3600, task_memory_mb=3072),
            limits=MediaLimits(
                max_duration_seconds=env_number(
                    "MEDIA_MAX_DURATION_SECONDS", MediaLimits.max_duration_seconds
                ),
                max_width=int(env_number("MEDIA_MAX_WIDTH", MediaLimits.max_width)),
                max_height=int(env_number("MEDIA_MAX_HEIGHT", MediaLimits.max_height)),
                max_streams=int(env_number("MEDIA_MAX_STREAMS", MediaLimits.max_streams)),
            ),
        )
