"""Image worker settings: the shared worker settings plus the image limits."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import env_number
from services.image.pipeline import ImageLimits


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: ImageLimits

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            worker=WorkerSettings.from_env("image", task_seconds=120, task_memory_mb=2048),
            limits=ImageLimits(
                max_pixels=int(env_number("IMAGE_MAX_PIXELS", ImageLimits.max_pixels)),
                max_frames=int(env_number("IMAGE_MAX_FRAMES", ImageLimits.max_frames)),
            ),
        )
