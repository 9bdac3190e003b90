"""How the CLI prints jobs, lists and outputs for a person (and JSON for scripts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from convertmesh.display import human_bytes
from convertmesh.models import Job, JobPage, Saved


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def saved_note(saved: Saved) -> str:
    note = f"saved {saved.path} ({human_bytes(saved.size)}"
    if saved.saved_percent is not None and saved.original_size:
        change = saved.saved_percent
        note += f", {abs(change):.0f}% {'smaller' if change >= 0 else 'larger'}"
    return note + ")"


def _status(job: Job) -> str:
    return "cancelled" if job.cancelled else job.status


def job_lines(job: Job) -> list[str]:
    lines = [
        f"job {job.id}: {_status(job)} ({job.job_type}), {job.progress}%, "
        f"{job.completed_files}/{job.total_files} done, {job.failed_files} failed",
        f"  created {job.created_at or '?'}, updated {job.updated_at or '?'}",
    ]
    if job.error_message:
        lines.append(f"  error: {job.error_message}")
    for item in job.files:
        text = f"  [{item.index}] {item.original_filename} -> {item.filename}: {item.status}"
        if item.ok:
            text += f", {human_bytes(item.original_size)} -> {human_bytes(item.final_size)}"
            if item.width and item.height:
                text += f", {item.width}x{item.height}"
            if item.duration:
                text += f", {item.duration:.2f} s"
        elif item.error_message:
            text += f": {item.error_message}"
        lines.append(text)
    if job.archive is not None:
        lines.append(f"  zip: {job.archive.status} {human_bytes(job.archive.size)}")
    return lines


def job_page_lines(page: JobPage) -> list[str]:
    if not page.jobs:
        return ["no jobs"]
    lines = [f"{'JOB':36}  {'STATUS':10}  {'FILES':>5}  CREATED"]
    for job in page.jobs:
        lines.append(
            f"{job.id:36}  {_status(job):10}  {job.total_files:>5}  {job.created_at or ''}"
        )
    shown = page.offset + len(page.jobs)
    if page.has_more:
        lines.append(f"{shown} of {page.total}; more with --offset {shown}")
    return lines


def media_lines(media: Mapping[str, Any]) -> list[str]:
    """The `media` document of inspect, briefly."""
    head = [str(media.get(key)) for key in ("kind", "format", "mimeType") if media.get(key)]
    lines = [f"{media.get('filename', '?')}: {', '.join(head)}"]
    if media.get("width") and media.get("height"):
        lines.append(f"  size: {media['width']}x{media['height']}")
    if media.get("duration") is not None:
        lines.append(f"  duration: {float(media['duration']):.3f} s")
    if media.get("bitrateKbps"):
        lines.append(f"  bitrate: {media['bitrateKbps']} kb/s")
    if media.get("sizeBytes") is not None:
        lines.append(f"  bytes: {media['sizeBytes']}")
    streams = media.get("streams")
    for number, stream in enumerate(streams if isinstance(streams, list) else ()):
        if isinstance(stream, Mapping):
            described = ", ".join(f"{k}={v}" for k, v in stream.items() if v not in (None, ""))
            lines.append(f"  stream {number}: {described}")
    return lines
