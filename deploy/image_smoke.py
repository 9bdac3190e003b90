"""`make image-smoke`: the built image starts a worker that answers its gRPC health check.

Where a container runtime cannot start containers (no OCI runtime may set rlimits in some
sandboxes), the image's filesystem is exported (`podman create` + `export`, which start
nothing) and its worker runs under bubblewrap the way a pod runs it: the image as a read-only
root, uid 10001 without capabilities, a tmpfs on /scratch, the image's environment and working
directory. NATS runs on the host; the worker reaches it on loopback.

    PYTHONPATH=. python deploy/image_smoke.py IMAGE [SERVICE]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.nats import free_port, start_nats


def engine() -> str:
    found = shutil.which("podman") or shutil.which("docker")
    if not found:
        raise SystemExit("image-smoke needs podman or docker")
    return found


def export(image: str, root: Path) -> dict[str, object]:
    """Unpacks the image's filesystem into `root`; returns its configuration."""
    tool = engine()
    container = subprocess.run(
        [tool, "create", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        with subprocess.Popen([tool, "export", container], stdout=subprocess.PIPE) as tar_out:
            subprocess.run(["tar", "-x", "-C", str(root)], stdin=tar_out.stdout, check=True)
    finally:
        subprocess.run([tool, "rm", container], capture_output=True, check=False)
    inspected = subprocess.run(
        [tool, "image", "inspect", image], capture_output=True, text=True, check=True
    ).stdout
    config: dict[str, object] = json.loads(inspected)[0]["Config"]
    return config


def status(port: int, service: str) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5, wait_for_ready=True
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def main(image: str, service: str = "image") -> int:
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise SystemExit("image-smoke needs bubblewrap (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="image-smoke-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        config = export(image, root)
        nats = start_nats(Path(tmp) / "nats")
        health = free_port()
        declared = config.get("Env") or []
        assert isinstance(declared, list)
        env = dict(str(item).split("=", 1) for item in declared)
        env.update(
            NATS_URL=nats.url, HEALTH_PORT=str(health), GRPC_HOST="127.0.0.1", LOG_LEVEL="INFO"
        )
        command = [
            bwrap,
            "--ro-bind", str(root), "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/dev/shm",
            "--tmpfs", "/scratch",
            "--unshare-user", "--uid", "10001", "--gid", "10001",
            "--die-with-parent",
            "--chdir", str(config.get("WorkingDir") or "/"),
            "--clearenv",
            *(arg for key, value in env.items() for arg in ("--setenv", key, value)),
            "python", "-m", f"services.{service}",
        ]  # fmt: skip
        worker = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + 120
            while True:
                if worker.poll() is not None:
                    print(f"the {service} worker exited with {worker.returncode}")
                    return 1
                try:
                    ready, alive = status(health, ""), status(health, "liveness")
                except grpc.RpcError:
                    ready = alive = "UNREACHABLE"
                if ready == alive == "SERVING":
                    break
                if time.monotonic() > deadline:
                    print(f"health: ready {ready}, liveness {alive}")
                    return 1
                time.sleep(0.5)
            print(f"{image}: services.{service} answers gRPC health SERVING (ready and live)")
            return 0
        finally:
            worker.terminate()
            worker.wait(30)
            nats.stop()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
