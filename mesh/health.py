"""gRPC health for a service that has no gRPC server of its own (the workers).

Two names, for the two probes of a pod:
- `""` (readiness): SERVING while the service is connected to NATS and consuming; NOT_SERVING
  while NATS is away and once it drains.
- `liveness`: SERVING as long as the event loop answers (the servicer runs on it, so a wedged
  loop times the probe out). A NATS outage never fails it: a restart would not bring NATS back.

Started after the sandbox's fork server, like everything that creates gRPC state.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

log = logging.getLogger(__name__)

LIVENESS = "liveness"
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServer:
    def __init__(self, server: grpc.aio.Server, servicer: HealthServicer, port: int) -> None:
        self._server = server
        self._servicer = servicer
        self.port = port
        self._draining = False
        self._marking: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, host: str, port: int) -> HealthServer:
        """Serves health on host:port (0 picks a free port), not ready until told."""
        servicer = HealthServicer()
        await servicer.set("", _NOT_SERVING)
        await servicer.set(LIVENESS, _SERVING)
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"cannot serve gRPC health on {host}:{port}")
        await server.start()
        log.info("health served", extra={"port": bound})
        return cls(server, servicer, bound)

    async def set_ready(self, ready: bool) -> None:
        # A reconnect while draining must not make the service look ready again.
        serving = ready and not self._draining
        await self._servicer.set("", _SERVING if serving else _NOT_SERVING)

    def drain(self) -> None:
        """NOT_SERVING from now on, at once (called from a signal handler)."""
        self._draining = True
        self._marking = asyncio.get_running_loop().create_task(self.set_ready(False))

    async def stop(self) -> None:
        await self._servicer.enter_graceful_shutdown()
        await self._server.stop(grace=1)
