"""What a conversion produced: returned by every worker pipeline, reported in the task result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """Facts about one written output. Pipelines return it; the worker runtime publishes it."""

    format: str
    mime_type: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    applied_quality: int | None = None
