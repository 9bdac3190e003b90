"""Image worker settings: the shared worker settings plus the image limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mesh.bus.service import WorkerSettings
from mesh.settings import Env, load
from services.image.pipeline import ImageLimits


@dataclass(frozen=True)
class Settings:
    worker: WorkerSettings
    limits: ImageLimits

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return load(cls.read, env)

    @classmethod
    def read(cls, env: Env) -> Settings:
        return cls(
            worker=WorkerSettings.read(
                env, "image", task_seconds=120, task_memory_mb=2048, task_scratch_mb=4096
            ),
            limits=ImageLimits(
                max_pixels=env.integer("IMAGE_MAX_PIXELS", ImageLimits.max_pixels, minimum=1),
                max_frames=env.integer("IMAGE_MAX_FRAMES", ImageLimits.max_frames, minimum=1),
            ),
        )
