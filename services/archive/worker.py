"""The archive worker's handler: convert, unpack or pack, each in a sandboxed child process."""

from __future__ import annotations

import asyncio
import functools

from mesh import sandbox
from mesh.bus import service
from mesh.bus.runtime import Handler, TaskContext
from mesh.bus.tasks import TaskKind
from mesh.outcome import ExtractedEntry, Outcome
from services.archive import pipeline
from services.archive.settings import Settings

PRELOAD = ("services.archive.pipeline",)
REPORT_NAME = "conversion-report.json"


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
        extracted = tuple(
            ExtractedEntry(e.name, e.size, str(e.path) if e.path else None, e.skipped_reason)
            for e in entries
        )
        return Outcome(format="", mime_type="", entries=extracted)

    async def pack(context: TaskContext) -> Outcome:
        inputs = list(context.inputs)
        if context.task.report:
            report = context.scratch / REPORT_NAME
            await asyncio.to_thread(report.write_text, context.task.report)
            inputs.append((REPORT_NAME, report))
        return await sandbox.run_isolated(
            functools.partial(pipeline.pack_directory, rar_binary=settings.rar_binary),
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
