"""What a conversion produced: returned by every worker pipeline, reported in the task result."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path


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
    # The output's file name when the pipeline knows better than the job (a tar inside a gz).
    output_name: str = ""
    # A compress whose re-encode was not smaller: the output is a copy of the source.
    kept_original: bool = False


def smaller_or_original(
    source: Path, output: Path, outcome: Outcome, *, lost_detail: bool = False
) -> Outcome:
    """A compress never hands back a larger file: when the output is not smaller than the
    source (or `lost_detail` says a lossless format lost precision on the way), it becomes a
    byte-for-byte copy of the source (no quality was applied)."""
    if output.stat().st_size < source.stat().st_size and not lost_detail:
        return outcome
    shutil.copyfile(source, output)
    return dataclasses.replace(outcome, applied_quality=None, kept_original=True)
