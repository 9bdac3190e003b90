"""`python -m services.gateway`: load settings, configure logs, serve HTTP until SIGTERM."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from mesh import logs, telemetry, tracing
from services.gateway.app import create_app
from services.gateway.guard import uvicorn_options
from services.gateway.settings import Settings


def _drained(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    # uvicorn drains on SIGTERM, then raises it again against the handler it found: this one,
    # so that a drained gateway exits 0 (Kubernetes' and the launcher's stop) instead of dying
    # by the signal.
    signal.signal(signal.SIGTERM, _drained)
    settings = Settings.from_env()
    logs.configure("gateway", settings.log_level)
    telemetry.identify("gateway")
    tracing.configure("gateway", settings.traces)
    telemetry.serve(settings.metrics)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop=settings.event_loop,
        **uvicorn_options(settings.guard, settings.max_connections, settings.forwarded_allow_ips),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
