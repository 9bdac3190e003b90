"""`python -m services.orchestrator`: load settings, configure logs, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from mesh import eventloop, logs, telemetry, tracing
from mesh.bus import connection, streams
from mesh.bus.inline import InlineRequester
from mesh.health import LIVENESS
from services.orchestrator import callbacks
from services.orchestrator.advisories import watch_abandoned_tasks
from services.orchestrator.delivery import Deliverer
from services.orchestrator.index import JobIndex
from services.orchestrator.redispatch import redispatch_forever
from services.orchestrator.results import consume_results
from services.orchestrator.server import SERVICE_NAME, JobService, create_server
from services.orchestrator.settings import Settings
from services.orchestrator.store import JobStore
from services.orchestrator.sweeper import sweep_forever
from services.orchestrator.watches import JobWatches

log = logging.getLogger("orchestrator")


async def serve(settings: Settings) -> None:
    health = HealthServicer()
    watching: list[JobWatches] = []

    async def on_nats_state(connected: bool) -> None:
        if connected:
            for watches in watching:
                watches.reconnected()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if connected
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        await health.set("", status)
        await health.set(SERVICE_NAME, status)

    await on_nats_state(False)
    await health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    nc = await connection.connect(settings.nats_url, "orchestrator", on_nats_state)
    js = nc.jetstream()
    try:
        await streams.ensure_when_ready(js, settings.retention, settings.nats_replicas)
    except streams.ReplicasError:
        await connection.close(nc)
        raise
    store = await JobStore.open(js, settings.job_record_cache, settings.dispatch_mark_seconds)
    index = JobIndex(store.jobs_bucket, settings.retention.seconds)
    await index.start()
    watches = JobWatches(js, store, keep=settings.job_watch_keep)
    await watches.start()
    watching.append(watches)
    requester = InlineRequester(nc, settings.sync_inline_silence_seconds)
    await requester.start()
    servicer = JobService(js, store, index, settings, requester, watches=watches)
    server, port = create_server(servicer, health, settings.grpc_host, settings.grpc_port)
    await server.start()
    log.info("orchestrator listening", extra={"port": port})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    advisories = await watch_abandoned_tasks(nc, js)
    consumer = asyncio.create_task(consume_results(js, store, stop, callbacks.on_change(js)))
    deliverer = asyncio.create_task(Deliverer(js, store, settings.callbacks).run(stop))
    redispatcher = asyncio.create_task(
        redispatch_forever(servicer.creator, store, index, settings.redispatch_seconds, stop)
    )
    sweeper = asyncio.create_task(sweep_forever(js, settings.orphan_grace_seconds, stop))
    await stop.wait()
    log.info("orchestrator stopping")
    await advisories.unsubscribe()
    await health.enter_graceful_shutdown()
    await server.stop(grace=5)
    await requester.stop()
    await consumer
    await deliverer
    await redispatcher
    await sweeper
    await store.close()
    await watches.stop()
    await index.stop()
    await connection.close(nc)


def main() -> None:
    settings = Settings.from_env()
    logs.configure("orchestrator", settings.log_level)
    telemetry.identify("orchestrator")
    tracing.configure("orchestrator", settings.traces)
    telemetry.serve(settings.metrics)
    try:
        eventloop.run(serve(settings), settings.event_loop)
    except streams.ReplicasError as error:
        log.error("orchestrator refuses to start: %s", error)
        sys.exit(f"orchestrator refuses to start: {error}")


if __name__ == "__main__":
    main()
