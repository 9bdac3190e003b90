"""Metrics every service exports, in Prometheus' format.

The gateway serves them at `/metrics`; the orchestrator and workers, which have no HTTP server
of their own, serve them on `METRICS_PORT` when it is set (the cluster scrapes that port).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server

from mesh.settings import Env

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

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
RESULTS_APPLIED = Counter(
    "convertmesh_results_applied_total",
    "Worker results the orchestrator applied to jobs (changed: whether the job changed).",
    ["kind", "changed"],
)


def exposition() -> bytes:
    return bytes(generate_latest())


@dataclass(frozen=True)
class MetricsSettings:
    """Where the orchestrator and the workers serve their metrics; no port, no server."""

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
