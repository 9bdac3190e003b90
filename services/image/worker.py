"""The image worker's handler: the pipeline in a pooled sandbox process per task."""

from __future__ import annotations

from mesh.bus import service
from mesh.bus.runtime import Handler
from services.image import pipeline
from services.image.settings import Settings

PRELOAD = ("services.image.pipeline",)


def handler(settings: Settings) -> Handler:
    return service.sandboxed(pipeline.convert, settings.limits, settings.worker)
