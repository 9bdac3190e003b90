"""`make run`'s launcher: the whole mesh as one foreground process that stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from launcher.nats import free_port

ROOT = Path(__file__).resolve().parents[2]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_for(predicate: object, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_launcher_serves_reports_nats_loss_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT=str(port),
        GRPC_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        API_KEYS="",
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        assert launcher.stdout is not None
        assert "development key" in launcher.stdout.readline()
        assert "convertmesh is up" in launcher.stdout.readline()
        assert status_of(health) == 200
        children = psutil.Process(launcher.pid).children()
        names = {" ".join(c.cmdline()) for c in children}
        for service in ("orchestrator", "image", "media", "archive", "gateway"):
            assert any(f"services.{service}" in n for n in names), names
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()

        nats = next(c for c in children if "nats-server" in " ".join(c.cmdline()))
        nats.kill()
        assert wait_for(lambda: status_of(health) == 503, 20)

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) in (0, 1)
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_launcher_stops_promptly_when_asked_during_start_up(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        NATS_PORT=str(free_port()),
        API_KEYS="acme:key",
        ORCHESTRATOR_ADDR=f"127.0.0.1:{free_port()}",  # never healthy: start-up waits
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: len(psutil.Process(launcher.pid).children()) >= 6, 20)
        launcher.send_signal(signal.SIGTERM)
        # Promptly: start-up alone would wait 60 s for a healthy mesh.
        assert launcher.wait(30) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
