"""The archive worker's handler: run the pipeline in a sandboxed child process."""

from __future__ import annotations

from mesh import sandbox
from mesh.bus.runtime import Handler, TaskContext
from mesh.outcome import Outcome
from services.archive import pipeline
from services.archive.settings import Settings

PRELOAD = ("services.archive.pipeline",)


def handler(settings: Settings) -> Handler:
    limits = sandbox.SandboxLimits(
        wall_seconds=settings.worker.task_seconds,
        memory_bytes=settings.worker.task_memory_bytes,
    )

    async def handle(context: TaskContext) -> Outcome:
        task = context.task
        work = context.scratch / "work"
        work.mkdir()
        return await sandbox.run_isolated(
            pipeline.convert,
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

    return handle
