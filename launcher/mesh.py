"""The whole mesh as local processes: nats-server, orchestrator, three workers, gateway.

Used by `make run` (foreground, Ctrl-C stops everything; `supervise` restarts what exits, as
Kubernetes would) and by the end-to-end tests (free ports, temporary data directory; several
replicas of a service and a NATS cluster of its own for the chaos tests).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.nats import NatsCluster, NatsServer, free_port, start_cluster, start_nats
from launcher.supervision import RestartPolicy, Restarts

SERVICES = ("orchestrator", "image", "media", "archive", "gateway")
WORKERS = ("image", "media", "archive")
# Every service serves its metrics on METRICS_PORT (the gateway too, off its public port);
# workers serve gRPC health on HEALTH_PORT. Under `make run` each gets its own port:
# METRICS_PORT and HEALTH_PORT are the first of consecutive ones. Tracing follows the standard
# OTEL_* variables, inherited by every service (`OTEL_TRACES_EXPORTER=console make run` prints
# the spans).
METRICS_SERVICES = ("orchestrator", *WORKERS, "gateway")
DEFAULT_METRICS_PORT = 9101
DEFAULT_HEALTH_PORT = 50061


@dataclass
class MeshConfig:
    data_dir: Path
    http_port: int = 8080
    grpc_port: int = 50051
    nats_port: int = 4222
    api_keys: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    # LINK_SIGNING_KEYS for gateway and orchestrator: one per mesh, so restarted services keep
    # verifying the links handed out before.
    link_keys: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    metrics_ports: dict[str, int] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)
    # An external NATS (e.g. a cluster: comma-separated URLs); empty starts one of our own.
    nats_url: str = ""
    # Put before every service's command line (e.g. a sandbox like bubblewrap).
    command_prefix: list[str] = field(default_factory=list)
    # Processes per service (default 1): replicas are named `<service>-<n>`, each orchestrator
    # on a port of its own (`grpc_ports`), and the gateway balances over all of them.
    replicas: dict[str, int] = field(default_factory=dict)
    grpc_ports: dict[str, int] = field(default_factory=dict)
    # Servers of our own NATS: 1, or a cluster of that many on loopback.
    nats_servers: int = 1
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)

    @classmethod
    def from_env(cls) -> MeshConfig:
        data_dir = Path(os.environ.get("DATA_DIR", ".data")).resolve()
        metrics = int(os.environ.get("METRICS_PORT") or DEFAULT_METRICS_PORT)
        health = int(os.environ.get("HEALTH_PORT") or DEFAULT_HEALTH_PORT)
        return cls(
            data_dir=data_dir,
            http_port=int(os.environ.get("HTTP_PORT", "8080")),
            grpc_port=int(os.environ.get("GRPC_PORT", "50051")),
            nats_port=int(os.environ.get("NATS_PORT", "4222")),
            api_keys=os.environ.get("API_KEYS", ""),
            link_keys=os.environ.get("LINK_SIGNING_KEYS") or stored_link_key(data_dir),
            metrics_ports={name: metrics + i for i, name in enumerate(METRICS_SERVICES)},
            health_ports={name: health + i for i, name in enumerate(WORKERS)},
        )

    @classmethod
    def ephemeral(cls, data_dir: Path, api_keys: str, **extra_env: str) -> MeshConfig:
        """Free ports everywhere: for tests."""
        return cls(
            data_dir=data_dir,
            http_port=free_port(),
            grpc_port=free_port(),
            nats_port=free_port(),
            api_keys=api_keys,
            extra_env=dict(extra_env),
            log_dir=data_dir / "logs",
            metrics_ports={name: free_port() for name in METRICS_SERVICES},
            health_ports={name: free_port() for name in WORKERS},
        )


def stored_link_key(data_dir: Path) -> str:
    """The development link-signing key kept beside the data (jobs outlive a restart, so
    their links must too); created on first use."""
    path = data_dir / "link-signing-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def development_keys() -> str:
    return f"dev:{secrets.token_urlsafe(24)}"


def service_of(instance: str) -> str:
    """`image` for `image` or `image-2`."""
    return instance.rsplit("-", 1)[0] if instance[-1].isdigit() else instance


def _nats_name(server: NatsServer) -> str:
    """`nats`, or `nats-n0` for a member of a cluster."""
    return server.name if server.name.startswith("nats") else f"nats-{server.name}"


@dataclass
class _Exited:
    """A process that exited and is waiting out its restart delay."""

    at: float
    restart_at: float


class LocalMesh:
    def __init__(self, config: MeshConfig) -> None:
        self.config = config
        self.nats: NatsServer | None = None
        self.cluster: NatsCluster | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._started_at: dict[str, float] = {}
        self._restarts: dict[str, Restarts] = {}
        self._exited: dict[str, _Exited] = {}
        for instance in self.instances("orchestrator")[1:]:
            config.grpc_ports.setdefault(instance, free_port())

    def instances(self, service: str | None = None) -> list[str]:
        """Every process name of `service` (of every service when None), in start order."""
        names = []
        for name in SERVICES if service is None else (service,):
            count = self.config.replicas.get(name, 1)
            names += [name] if count == 1 else [f"{name}-{n}" for n in range(1, count + 1)]
        return names

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}"

    def grpc_port(self, instance: str = "orchestrator") -> int:
        return self.config.grpc_ports.get(instance, self.config.grpc_port)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port(self.instances('orchestrator')[0])}"

    @property
    def orchestrators_target(self) -> str:
        """Every orchestrator, as a gRPC target the gateway balances over."""
        ports = [self.grpc_port(name) for name in self.instances("orchestrator")]
        if len(ports) == 1:
            return f"127.0.0.1:{ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)

    @property
    def nats_url(self) -> str:
        if self.config.nats_url:
            return self.config.nats_url
        if self.cluster is not None:
            return self.cluster.url
        return f"nats://127.0.0.1:{self.config.nats_port}"

    def ports(self) -> str:
        """Where each service's metrics and health are served (what `make run` prints)."""
        metrics = [f"{name} :{port}" for name, port in self.config.metrics_ports.items()]
        health = [f"{name} :{port}" for name, port in self.config.health_ports.items()]
        return (
            f"metrics: {', '.join(metrics)} (/metrics); "
            f"gRPC health: orchestrator :{self.config.grpc_port}, {', '.join(health)}"
        )

    def environment(self, service: str = "") -> dict[str, str]:
        """The environment of `service`, a process name (of every service when empty: no
        ports of its own)."""
        c = self.config
        env = dict(os.environ)
        env.update(
            NATS_URL=self.nats_url,
            GRPC_PORT=str(self.grpc_port(service)),
            HTTP_PORT=str(c.http_port),
            API_KEYS=c.api_keys,
            LINK_SIGNING_KEYS=c.link_keys,
            SCRATCH_DIR=str(c.data_dir / "scratch"),
            PYTHONUNBUFFERED="1",
        )
        if len(self.instances("orchestrator")) > 1:
            env["ORCHESTRATOR_ADDR"] = self.orchestrators_target
        env.update(c.extra_env)
        # Never inherited: one port for every service makes all but the first fail to bind.
        for name, ports in (("METRICS_PORT", c.metrics_ports), ("HEALTH_PORT", c.health_ports)):
            env.pop(name, None)
            if service in ports:
                env[name] = str(ports[service])
        return env

    def start(
        self,
        ready_timeout: float = 180.0,
        stopping: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] = print,
    ) -> None:
        c = self.config
        (c.data_dir / "scratch").mkdir(parents=True, exist_ok=True)
        if c.log_dir:
            c.log_dir.mkdir(parents=True, exist_ok=True)
        if not c.nats_url and c.nats_servers > 1:
            self.cluster = start_cluster(
                c.data_dir / "nats", c.nats_servers, log_dir=c.log_dir, max_file_store="20G"
            )
        elif not c.nats_url:
            self.nats = start_nats(
                c.data_dir / "nats",
                port=c.nats_port,
                log_file=c.log_dir / "nats.log" if c.log_dir else None,
            )
        for server in self.nats_servers():
            self._started_at[_nats_name(server)] = time.monotonic()
        for name in self.instances():
            self.start_service(name)
        self.wait_ready(ready_timeout, stopping, say)

    def start_service(self, name: str, env: dict[str, str] | None = None) -> None:
        """Starts process `name` (a service, or one of its replicas)."""
        log_dir = self.config.log_dir
        output = (log_dir / f"{name}.log").open("ab") if log_dir else None
        self.processes[name] = subprocess.Popen(
            [*self.config.command_prefix, sys.executable, "-m", f"services.{service_of(name)}"],
            env=env or self.environment(name),
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
        self._started_at[name] = time.monotonic()

    def nats_servers(self) -> list[NatsServer]:
        """The NATS servers this mesh started (none with an external NATS)."""
        if self.cluster is not None:
            return list(self.cluster.nodes)
        return [self.nats] if self.nats is not None else []

    def supervise(self, now: float | None = None, say: Callable[[str], None] = print) -> None:
        """Restarts every process (NATS servers too, on their own store) that exited, once
        its delay is over; `say` gets one line per exit and per restart. Raises GiveUpError
        when one keeps failing right after it starts."""
        now = time.monotonic() if now is None else now
        for name, process in self.processes.items():
            self._watch(name, process.poll(), now, say)
        for server in self.nats_servers():
            self._watch(_nats_name(server), server.process.poll(), now, say)
        for name, exited in list(self._exited.items()):
            if now < exited.restart_at:
                continue
            del self._exited[name]
            say(f"restarting {name} (restart {self._restarts[name].count})")
            servers = [server for server in self.nats_servers() if _nats_name(server) == name]
            if servers:
                (server,) = servers
                self._started_at[name] = time.monotonic()
                try:
                    server.restart()
                except RuntimeError as error:  # counted as an exit on the next round
                    say(f"{name} did not start: {error}")
            else:
                self.start_service(name)

    def _watch(self, name: str, code: int | None, now: float, say: Callable[[str], None]) -> None:
        if code is None or name in self._exited:
            return
        restarts = self._restarts.setdefault(name, Restarts(name, self.config.restart_policy))
        ran = now - self._started_at.get(name, now)
        delay = restarts.delay_after_exit(ran)
        say(f"{name} exited with code {code} after {ran:.1f} s; restarting in {delay:g} s")
        self._exited[name] = _Exited(now, now + delay)

    def wait_ready(
        self,
        timeout: float,
        stopping: Callable[[], bool] = lambda: False,
        say: Callable[[str], None] = print,
    ) -> None:
        """Waits until /healthz answers 200 (gateway, orchestrator and NATS all up) and every
        worker that serves gRPC health on a port of its own is ready (connected to NATS and
        consuming): a worker that died at start would otherwise leave its tasks waiting after
        the mesh said it was up. Returns early when `stopping` says a stop was asked for
        meanwhile. A process that exits meanwhile is restarted (`supervise`), until it keeps
        failing at start."""
        deadline = time.monotonic() + timeout
        waiting = ["gateway", *(name for name in self.instances() if self._health_port(name))]
        while time.monotonic() < deadline and not stopping():
            self.supervise(say=say)
            waiting = [name for name in waiting if not self._ready(name)]
            if not waiting:
                return
            time.sleep(0.2)
        if not stopping():
            raise RuntimeError(f"the mesh did not become ready in time: {', '.join(waiting)}")

    def _health_port(self, instance: str) -> int:
        return self.config.health_ports.get(instance, 0)

    def _ready(self, instance: str) -> bool:
        """The gateway: /healthz answers 200; a worker: its gRPC readiness is SERVING."""
        if instance == "gateway":  # every gateway replica serves the one HTTP port
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False
        process = self.processes.get(instance)
        if process is None or process.poll() is not None:
            return False
        with grpc.insecure_channel(f"127.0.0.1:{self._health_port(instance)}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to every service (gateway first, NATS last), then SIGKILL stragglers."""
        for name in reversed(self.instances()):
            process = self.processes.get(name)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in self.nats_servers():
            server.stop()

    def exited(self) -> dict[str, int]:
        return {
            name: code
            for name, process in self.processes.items()
            if (code := process.poll()) is not None
        }
