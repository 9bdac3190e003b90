"""`make run` with METRICS_PORT set: every service gets a port of its own (it used to hand the
same one to all of them, and all but one crashed binding it), the gateway's off its public
port, and the launcher prints them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.mesh import METRICS_SERVICES, WORKERS
from launcher.nats import free_port

ROOT = Path(__file__).resolve().parents[2]


def free_run(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        base = free_port()
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def scrape(port: int, within: float = 60) -> str:
    """The metrics on `port`, waiting for a worker still starting (its sandbox comes first)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_make_run_gives_every_service_its_own_metrics_and_health_port(tmp_path: Path) -> None:
    metrics, health, http = free_run(len(METRICS_SERVICES)), free_run(len(WORKERS)), free_port()
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT=str(http),
        GRPC_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        METRICS_PORT=str(metrics),
        HEALTH_PORT=str(health),
        API_KEYS="dev:key-0123456789",
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        assert "convertmesh is up" in launcher.stdout.readline()
        printed = launcher.stdout.readline()
        assert "gateway" in METRICS_SERVICES
        for offset, service in enumerate(METRICS_SERVICES):
            assert f"{service} :{metrics + offset}" in printed, printed
            exposition = scrape(metrics + offset)
            assert f'convertmesh_service_info{{service="{service}"}} 1.0' in exposition
        assert re.search(rf"gRPC health: orchestrator :\d+, image :{health}\b", printed)
        for offset in range(len(WORKERS)):
            with grpc.insecure_channel(f"127.0.0.1:{health + offset}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="liveness"),
                    timeout=60,
                    wait_for_ready=True,
                )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert launcher.poll() is None, "a service exited"
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
