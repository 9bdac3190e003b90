"""The media worker's handler: the pipeline in a pooled sandbox process per task."""

from __future__ import annotations

from mesh.bus import service
from mesh.bus.runtime import Handler
from services.media import pipeline
from services.media.settings import Settings

PRELOAD = ("services.media.pipeline",)


def handler(settings: Settings) -> Handler:
    return service.sandboxed(pipeline.convert, settings.limits, settings.worker)
