"""The media worker's handler: the pipeline, or a media tool (`tools.run`), in a pooled
sandbox process per task."""

from __future__ import annotations

from mesh.bus import service
from mesh.bus.runtime import Handler
from services.media import pipeline, tools
from services.media.settings import Settings

PRELOAD = ("services.media.pipeline", "services.media.tools")


def handler(settings: Settings) -> Handler:
    return service.with_tools(pipeline.convert, tools.run, settings.limits, settings.worker)
