"""Metrics every service exports, in Prometheus' format, each service on its own port.

Every service (the gateway too, off its public port) serves them on `METRICS_PORT` when it is
set; `make run` gives each its own. Names follow Prometheus' conventions: base units in the
name (`_seconds`, `_bytes`), counters end in `_total` (`tests/mesh/test_telemetry.py` runs
promtool's linter over the exposition). Labels are bounded sets: route templates, services,
formats, outcomes, reasons; never ids.

Besides the families below, prometheus_client's own collectors export `process_*` (resident
memory, CPU, open files); `convertmesh_service_info{service}` names the service, for joins.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from mesh.settings import Env

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Task stages and job lifetimes: from a few milliseconds (a thumbnail) to hours (a film).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)
CONSUMER_INFO_SECONDS = 2.0

# --- gateway ---------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "convertmesh_http_requests_total",
    "HTTP requests answered by the gateway.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "convertmesh_http_request_seconds",
    "Time to the first byte of the gateway's answer.",
    ["route", "method"],
)
HTTP_RECEIVED_BYTES = Counter(
    "convertmesh_http_received_bytes_total",
    "Request body bytes the gateway read (uploads included).",
    ["route"],
)
HTTP_SENT_BYTES = Counter(
    "convertmesh_http_sent_bytes_total",
    "Response body bytes the gateway sent (downloads included).",
    ["route"],
)

# --- orchestrator ----------------------------------------------------------------------------
GRPC_REQUESTS = Counter(
    "convertmesh_grpc_requests_total",
    "JobService calls the orchestrator answered, by method and gRPC status code.",
    ["method", "code"],
)
GRPC_SECONDS = Histogram(
    "convertmesh_grpc_request_seconds",
    "Time the orchestrator spent on a JobService call (streams: until their end).",
    ["method"],
    buckets=SECONDS_BUCKETS,
)
JOBS_CREATED = Counter("convertmesh_jobs_created_total", "Jobs created.", ["type"])
JOBS_FINISHED = Counter(
    "convertmesh_jobs_finished_total",
    "Jobs that reached a terminal status (completed, failed, cancelled).",
    ["type", "outcome"],
)
JOB_SECONDS = Histogram(
    "convertmesh_job_seconds",
    "Time from a job's creation to its terminal status.",
    ["type", "outcome"],
    buckets=SECONDS_BUCKETS,
)
FILES_FINISHED = Counter(
    "convertmesh_files_finished_total",
    "Files of jobs that reached a terminal status, by the service that converted them, the "
    "output format, the outcome and (for failures) the reason.",
    ["service", "format", "outcome", "reason"],
)
UPLOAD_BYTES = Counter(
    "convertmesh_upload_bytes_total", "Source bytes the orchestrator stored (uploads)."
)
DOWNLOAD_BYTES = Counter(
    "convertmesh_download_bytes_total", "Output bytes the orchestrator streamed (downloads)."
)
SOURCE_FETCHES = Counter(
    "convertmesh_source_fetches_total",
    "sourceUrl fetches of the orchestrator, by outcome (succeeded, or the reason it failed).",
    ["outcome"],
)
SOURCE_FETCH_SECONDS = Histogram(
    "convertmesh_source_fetch_seconds",
    "Time of one sourceUrl fetch, connection to the last byte stored.",
    buckets=SECONDS_BUCKETS,
)
SOURCE_FETCH_BYTES = Counter(
    "convertmesh_source_fetch_bytes_total", "Source bytes the orchestrator fetched (sourceUrl)."
)
RESULTS_APPLIED = Counter(
    "convertmesh_results_applied_total",
    "Worker results the orchestrator applied to jobs (changed: whether the job changed).",
    ["kind", "changed"],
)
SYNC_INLINE = Counter(
    "convertmesh_sync_inline_total",
    "Synchronous conversions sent straight to a worker (no job stored), by service and outcome "
    "(converted, failed; no_responders, silent, timeout, durable: handed to the job path).",
    ["service", "outcome"],
)
SYNC_INLINE_RUNNING = Gauge(
    "convertmesh_sync_inline_running",
    "Synchronous conversions sent straight to a worker and not answered yet.",
)
CALLBACK_ATTEMPTS = Counter(
    "convertmesh_callback_attempts_total",
    "Callback deliveries attempted, by event type and what became of it.",
    ["event", "status"],
)

# --- workers ---------------------------------------------------------------------------------
TASKS = Counter(
    "convertmesh_tasks_total",
    "Tasks a worker finished, by outcome (succeeded, failed, retried, skipped).",
    ["service", "outcome"],
)
TASK_SECONDS = Histogram(
    "convertmesh_task_seconds",
    "Wall time of one task in a worker, download to upload.",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
STAGE_SECONDS = Histogram(
    "convertmesh_task_stage_seconds",
    "Time of one stage of a task: queue_wait (published to taken), fetch (source to scratch), "
    "convert (the handler, sandbox included), store (output to the object store).",
    ["service", "stage"],
    buckets=SECONDS_BUCKETS,
)
TASK_INPUT_BYTES = Counter(
    "convertmesh_task_input_bytes_total", "Source bytes workers fetched.", ["service"]
)
TASK_OUTPUT_BYTES = Counter(
    "convertmesh_task_output_bytes_total",
    "Output bytes workers stored, by output format.",
    ["service", "format"],
)
TASKS_IN_FLIGHT = Gauge(
    "convertmesh_tasks_in_flight", "Tasks a worker is working on now.", ["service"]
)
SANDBOX_PROCESSES = Gauge(
    "convertmesh_sandbox_processes",
    "Sandbox processes of a worker's pool, idle or running a call.",
    ["service", "state"],
)
SANDBOX_STARTS = Counter(
    "convertmesh_sandbox_starts_total", "Sandbox processes started.", ["service"]
)
SANDBOX_RECYCLES = Counter(
    "convertmesh_sandbox_recycles_total",
    "Sandbox processes ended instead of reused, by why (calls, rss, address_space, helpers, "
    "surplus, crash, timeout, cancelled, memory).",
    ["service", "reason"],
)
SANDBOX_RSS = Gauge(
    "convertmesh_sandbox_resident_memory_bytes",
    "Resident memory of a worker's sandbox processes together.",
    ["service"],
)

# --- every consumer (tasks, results, callbacks) ----------------------------------------------
REDELIVERIES = Counter(
    "convertmesh_redeliveries_total",
    "Messages a JetStream consumer was handed again (a lease expired or a nak).",
    ["stream", "consumer"],
)

SERVICE_INFO = Info("convertmesh_service", "The service this process is.")
_service = ""


def identify(service: str) -> None:
    """Names this process's service: `convertmesh_service_info` and process-wide labels."""
    global _service  # noqa: PLW0603 - once per process, at start
    _service = service
    SERVICE_INFO.info({"service": service})


def service_name() -> str:
    return _service


def exposition() -> bytes:
    return bytes(generate_latest())


@dataclass(frozen=True)
class MetricsSettings:
    """Where a service serves its metrics; no port, no server."""

    port: int | None = None
    host: str = "127.0.0.1"

    @classmethod
    def read(cls, env: Env) -> MetricsSettings:
        return cls(
            port=env.optional_integer("METRICS_PORT", minimum=1, maximum=65535),
            host=env.text("METRICS_HOST", cls.host),
        )


def serve(settings: MetricsSettings) -> None:
    """Serves the metrics on `settings.port`, if set (a thread of this process)."""
    if settings.port is None:
        return
    _start_http_server(settings.port, addr=settings.host)
    log.info("metrics served", extra={"port": settings.port})


@dataclass(frozen=True)
class _Watched:
    loop: asyncio.AbstractEventLoop
    js: Any
    stream: str
    consumer: str


class ConsumerCollector(Collector):
    """Each consumer's state as JetStream reports it, asked for at every scrape (from the
    metrics thread, on the event loop that owns the connection)."""

    _FAMILIES = (
        ("pending", "num_pending", "Messages a consumer has not been handed yet."),
        ("ack_pending", "num_ack_pending", "Messages handed out and not acknowledged yet."),
        ("redelivered", "num_redelivered", "Messages handed out more than once, unacked."),
    )

    def __init__(self) -> None:
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._lock = threading.Lock()

    def watch(self, js: Any, stream: str, consumer: str) -> None:
        with self._lock:
            self._watched[(stream, consumer)] = _Watched(
                asyncio.get_running_loop(), js, stream, consumer
            )

    def forget(self, stream: str, consumer: str) -> None:
        with self._lock:
            self._watched.pop((stream, consumer), None)

    def describe(self) -> Iterable[Any]:
        return list(self._families())

    def collect(self) -> Iterable[Any]:
        families = self._families()
        with self._lock:
            watched = list(self._watched.values())
        for item in watched:
            info = _consumer_info(item)
            if info is None:
                continue
            for family, (_, attribute, _) in zip(families, self._FAMILIES, strict=True):
                family.add_metric([item.stream, item.consumer], float(getattr(info, attribute)))
        return families

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                f"convertmesh_consumer_{name}_messages", text, labels=["stream", "consumer"]
            )
            for name, _, text in self._FAMILIES
        ]


def _consumer_info(item: _Watched) -> Any:
    loop = item.loop
    if loop.is_closed():
        return None
    try:
        if asyncio.get_running_loop() is loop:
            return None  # asked from the loop itself: it cannot wait for its own answer
    except RuntimeError:
        pass
    future = asyncio.run_coroutine_threadsafe(
        item.js.consumer_info(item.stream, item.consumer), loop
    )
    try:
        return future.result(CONSUMER_INFO_SECONDS)
    except Exception as exc:  # JetStream unreachable or slow: the scrape goes on without it
        future.cancel()
        log.debug("consumer info failed: %r", exc)
        return None


CONSUMERS = ConsumerCollector()
REGISTRY.register(CONSUMERS)
