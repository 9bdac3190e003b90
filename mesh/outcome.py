"""What a conversion produced: returned by every worker pipeline, reported in the task result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractedEntry:
    """A member of an unpacked archive: stored as `blob`, or skipped for `skipped_reason`."""

    name: str
    size: int
    blob: str | None
    detected_format: str = ""
    skipped_reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """Facts about one written output. Pipelines return it; the worker runtime publishes it."""

    format: str
    mime_type: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    applied_quality: int | None = None
    # Set when the handler stored its outputs itself (an archive's members) instead of
    # writing the one output file.
    entries: tuple[ExtractedEntry, ...] | None = None
