"""Running a worker service: settings every worker shares, connect, consume, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing.util
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mesh import eventloop, logs, sandbox, scratch, telemetry, tracing
from mesh.bus import connection, streams
from mesh.bus.inline import InlineServer
from mesh.bus.runtime import Handler, RuntimeSettings, TaskContext, Worker
from mesh.bus.tasks import TaskKind
from mesh.health import HealthServer
from mesh.outcome import Outcome
from mesh.settings import Env
from mesh.tools.catalog import Input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker reads from the environment; limits of the conversion itself are the
    service's own settings, which hold these."""

    nats_url: str
    runtime: RuntimeSettings
    task_seconds: float
    task_memory_bytes: int | None
    log_level: str
    retention: streams.Retention
    metrics: telemetry.MetricsSettings
    pool: sandbox.PoolSettings
    event_loop: str
    nats_replicas: int = 1
    # gRPC health (readiness and liveness probes) on GRPC_HOST:HEALTH_PORT; 0: not served.
    health_host: str = "127.0.0.1"
    health_port: int = 0
    traces: tracing.TracingSettings = field(default_factory=tracing.TracingSettings)

    @classmethod
    def read(
        cls,
        env: Env,
        service: str,
        task_seconds: float,
        task_memory_mb: float,
        task_scratch_mb: float,
    ) -> WorkerSettings:
        """`<SERVICE>_...` for what differs per worker, the rest shared by all of them."""
        prefix = service.upper()
        scratch_dir = env.optional("SCRATCH_DIR")
        memory_mb = env.number(f"{prefix}_TASK_MEMORY_MB", task_memory_mb, minimum=0)
        scratch_mb = env.number(f"{prefix}_TASK_SCRATCH_MB", task_scratch_mb, minimum=0)
        concurrency = env.integer(f"{prefix}_CONCURRENCY", os.cpu_count() or 1, minimum=1)
        recycle_mb = env.number(f"{prefix}_SANDBOX_RSS_MB", 512, minimum=0)
        return cls(
            nats_url=env.text("NATS_URL", "nats://127.0.0.1:4222"),
            runtime=RuntimeSettings(
                service=service,
                worker_name=f"{service}@{socket.gethostname()}:{os.getpid()}",
                concurrency=concurrency,
                ack_wait_seconds=env.number("TASK_ACK_WAIT_SECONDS", 30.0, positive=True),
                max_deliver=env.integer("TASK_MAX_DELIVER", 4, minimum=1),
                scratch_dir=Path(scratch_dir) if scratch_dir else None,
                drain_seconds=env.number("TASK_DRAIN_SECONDS", 20.0, minimum=0),
                task_scratch_bytes=int(scratch_mb * 1024 * 1024) if scratch_mb > 0 else None,
                started_grace_seconds=env.number("TASK_STARTED_GRACE_SECONDS", 0.5, minimum=0),
            ),
            task_seconds=env.number(f"{prefix}_TASK_SECONDS", task_seconds, positive=True),
            task_memory_bytes=int(memory_mb * 1024 * 1024) if memory_mb > 0 else None,
            log_level=env.text("LOG_LEVEL", "INFO"),
            retention=streams.Retention.read(env),
            metrics=telemetry.MetricsSettings.read(env),
            nats_replicas=streams.read_replicas(env),
            health_host=env.text("GRPC_HOST", "127.0.0.1"),
            health_port=env.integer("HEALTH_PORT", 0, minimum=0, maximum=65535),
            pool=sandbox.PoolSettings(
                tasks_per_process=env.integer(f"{prefix}_SANDBOX_TASKS", 200, minimum=1),
                recycle_rss_bytes=int(recycle_mb * 1024 * 1024) if recycle_mb > 0 else None,
                max_idle=concurrency,
            ),
            event_loop=eventloop.read(env),
            traces=tracing.TracingSettings.read(env),
        )


def sandbox_limits(settings: WorkerSettings) -> sandbox.SandboxLimits:
    return sandbox.SandboxLimits(
        wall_seconds=settings.task_seconds, memory_bytes=settings.task_memory_bytes
    )


def sandboxed(convert: Callable[..., Outcome], limits: object, settings: WorkerSettings) -> Handler:
    """The handler of a worker whose pipeline is `convert(source, output, source_format,
    options, limits)`, each task in a pooled sandbox process."""
    bounds = sandbox_limits(settings)

    async def handle(context: TaskContext) -> Outcome:
        task = context.task
        outcome: Outcome = await sandbox.run_isolated(
            convert,
            context.source,
            context.output,
            task.source_format,
            task.options,
            limits,
            limits=bounds,
            on_progress=context.report_progress,
        )
        return outcome

    return handle


def with_tools(
    convert: Callable[..., Outcome],
    run_tool: Callable[..., Outcome],
    limits: object,
    settings: WorkerSettings,
) -> Handler:
    """The handler of a worker that converts (`sandboxed(convert)`) and runs media tools:
    `run_tool(tool, sources, output, params, limits, extra=)`, each in a sandboxed child.
    A tool's further sources and its second file are fetched beside the first source."""
    converting = sandboxed(convert, limits, settings)
    bounds = sandbox_limits(settings)

    async def handle(context: TaskContext) -> Outcome:
        task = context.task
        if task.kind is not TaskKind.TOOL:
            return await converting(context)
        sources = [Input(context.source, task.source_format)]
        for number, source in enumerate(task.sources[1:], start=1):
            path = context.scratch / f"source-{number}"
            await _fetch_more(context, source.blob, path, source=number)
            sources.append(Input(path, source.format))
        extra: Input | None = None
        if task.extra is not None:
            extra = Input(context.scratch / "extra", task.extra.format)
            await _fetch_more(context, task.extra.blob, extra.path, source="extra")
        outcome: Outcome = await sandbox.run_isolated(
            functools.partial(_traced_tool, run_tool, extra=extra),
            task.tool,
            sources,
            context.output,
            dict(task.params),
            limits,
            limits=bounds,
            on_progress=context.report_progress,
        )
        return outcome

    return handle


async def _fetch_more(context: TaskContext, blob: str, path: Path, source: int | str) -> None:
    """A tool's further source (or its second file), as a stage of the task like the first."""
    with tracing.stage("fetch source", source=source) as step:
        await context.fetch(blob, path)
        size = (await asyncio.to_thread(path.stat)).st_size
        tracing.set_attributes(step, {"convertmesh.input_bytes": size})
    telemetry.TASK_INPUT_BYTES.labels(telemetry.service_name()).inc(size)


def _traced_tool(
    run_tool: Callable[..., Outcome], tool: str, *args: object, **kwargs: object
) -> Outcome:
    """In the sandbox: the tool's run as a stage of the task's trace (what the tool does
    inside it, the pipeline's own steps, nest under it)."""
    with tracing.stage("tool", tool=tool) as step:
        outcome = run_tool(tool, *args, **kwargs)
        tracing.set_attributes(step, {"convertmesh.output_format": outcome.format})
    return outcome


def main(settings: WorkerSettings, handler: Callable[[], Handler], preload: Sequence[str]) -> None:
    """A worker's `__main__`: logs, its own scratch folder (what a dead predecessor left is
    removed; the folder's `tmp/` becomes TMPDIR), the sandbox's fork server (before any NATS
    or gRPC state exists), then consume until SIGTERM. Sandbox processes start with the first
    tasks."""
    logs.configure(settings.runtime.service, settings.log_level)
    space = scratch.ScratchSpace.claim(settings.runtime.scratch_dir, settings.runtime.service)
    space.use_as_tmpdir()
    # Removed at exit after multiprocessing removed its own temp dir (priority -100) from it.
    multiprocessing.util.Finalize(None, space.release, exitpriority=-200)
    telemetry.identify(settings.runtime.service)
    sandbox.preload(preload)
    sandbox.configure(settings.pool)
    # After the fork server: its sandbox processes never hold the exporter's threads.
    tracing.configure(settings.runtime.service, settings.traces)
    telemetry.serve(settings.metrics)
    eventloop.run(serve(settings, handler(), space), settings.event_loop)


async def serve(
    settings: WorkerSettings, handler: Handler, space: scratch.ScratchSpace | None = None
) -> None:
    """Consumes the service's tasks until SIGTERM/SIGINT, then drains: readiness goes
    NOT_SERVING first, no task is fetched after that, the ones in flight finish (or are
    released to other workers after TASK_DRAIN_SECONDS)."""
    service = settings.runtime.service
    health = None
    if settings.health_port:
        health = await HealthServer.start(settings.health_host, settings.health_port)
    nc = await connection.connect(
        settings.nats_url, f"worker-{service}", health.set_ready if health else None
    )
    js = nc.jetstream()
    await streams.ensure_when_ready(js, settings.retention, settings.nats_replicas)
    # Tasks from the stream and small synchronous conversions straight from the orchestrator
    # (mesh.bus.inline) share the worker's slots: at most <SERVICE>_CONCURRENCY conversions
    # (sandbox processes, their memory) at once, whichever way they came.
    slots = asyncio.Semaphore(settings.runtime.concurrency)

    async def gated(context: TaskContext) -> Outcome:
        async with slots:
            return await handler(context)

    worker = Worker(nc, js, settings.runtime, gated, space)
    inline = InlineServer(nc, settings.runtime, gated, space) if space is not None else None
    if inline is not None:
        await inline.start()
    stopped: list[asyncio.Task[None]] = []

    def stop() -> None:
        log.info("worker draining")
        if health:
            health.drain()
        worker.stop()
        if inline is not None and not stopped:
            stopped.append(asyncio.create_task(inline.stop()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("worker consuming", extra={"subject": streams.task_subject(service)})
    await worker.run()
    if inline is not None:
        await (stopped[0] if stopped else inline.stop())
    await sandbox.shutdown()
    await connection.close(nc)
    if health:
        await health.stop()
    log.info("worker stopped")
