"""`python -m services.gateway`: load settings, configure logs, serve HTTP until SIGTERM."""

from __future__ import annotations

import uvicorn

from mesh import logs, telemetry, tracing
from services.gateway.app import create_app
from services.gateway.guard import uvicorn_options
from services.gateway.settings import Settings


def main() -> None:
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
