"""The archive worker's handler: convert, unpack or pack, each in a pooled sandbox process.

UNPACK stores every extracted member as its own blob (sniffed, for its own conversion by the
worker its content calls for); PACK fetches the members' outputs and zips them back.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from mesh import sandbox
from mesh.bus import claims, service
from mesh.bus.runtime import Handler, TaskContext
from mesh.bus.tasks import TaskKind
from mesh.formats import SNIFF_BYTES, sniff
from mesh.outcome import ExtractedEntry, Outcome
from services.archive import pipeline
from services.archive.members import Entry
from services.archive.settings import Settings

PRELOAD = ("services.archive.pipeline",)
REPORT_NAME = pipeline.REPORT_NAME


def handler(settings: Settings) -> Handler:
    limits = service.sandbox_limits(settings.worker)

    async def unpack(context: TaskContext) -> Outcome:
        entries = await sandbox.run_isolated(
            pipeline.extract,
            context.source,
            context.task.source_format,
            context.scratch / "entries",
            settings.limits,
            limits=limits,
        )
        stored = [
            await _store_entry(context, claims.entry_blob(context.task.output_blob, number), entry)
            for number, entry in enumerate(entries)
        ]
        return Outcome(format="", mime_type="", entries=tuple(stored))

    async def pack(context: TaskContext) -> Outcome:
        folder = context.scratch / "inputs"
        folder.mkdir()
        inputs: list[tuple[str, Path]] = []
        for number, item in enumerate(context.task.inputs):
            path = folder / str(number)
            await context.fetch(item.blob, path)
            inputs.append((item.name, path))
        if context.task.report:
            report = context.scratch / REPORT_NAME
            await asyncio.to_thread(report.write_text, context.task.report)
            inputs.append((REPORT_NAME, report))
        return await sandbox.run_isolated(
            functools.partial(
                pipeline.pack_directory,
                rar_binary=settings.rar_binary,
                traced_members=settings.trace_members,
            ),
            inputs,
            context.output,
            "zip",
            context.task.options.compression,
            limits=limits,
        )

    async def convert(context: TaskContext) -> Outcome:
        task = context.task
        work = context.scratch / "work"
        work.mkdir()
        return await sandbox.run_isolated(
            functools.partial(pipeline.convert, rar_binary=settings.rar_binary),
            context.source,
            context.output,
            task.source_format,
            task.filename,
            task.options,
            settings.limits,
            work,
            limits=limits,
            on_progress=context.report_progress,
        )

    async def handle(context: TaskContext) -> Outcome:
        if context.task.kind is TaskKind.UNPACK:
            return await unpack(context)
        if context.task.kind is TaskKind.PACK:
            return await pack(context)
        return await convert(context)

    return handle


async def _store_entry(context: TaskContext, blob: str, entry: Entry) -> ExtractedEntry:
    if entry.path is None:
        return ExtractedEntry(entry.name, entry.size, None, skipped_reason=entry.skipped_reason)
    sniffed = sniff(await asyncio.to_thread(_read_head, entry.path))
    size = await context.store(blob, entry.path)
    return ExtractedEntry(entry.name, size, blob, sniffed.format)


def _read_head(path: Path) -> bytes:
    with path.open("rb") as stream:
        return stream.read(SNIFF_BYTES)
