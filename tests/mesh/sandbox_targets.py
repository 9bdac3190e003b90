"""Module-level functions the sandbox tests run in child processes (they must be importable)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from mesh import tracing
from mesh.errors import MeshError, Reason
from mesh.sandbox import report_progress


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def child_pid() -> int:
    return os.getpid()


def parent_pid() -> int:
    return os.getppid()


def reject(detail_value: str) -> None:
    raise MeshError(Reason.UNSUPPORTED_FORMAT, "Not an image we can read.", sniffed=detail_value)


def fail_unexpectedly() -> None:
    raise ValueError("secret internal path /srv/scratch/abc")


def sleep_with_grandchild(pid_file: str) -> None:
    helper = subprocess.Popen(["sleep", "100"])
    Path(pid_file).write_text(f"{os.getpid()} {helper.pid}")
    time.sleep(100)


def allocate(size: int) -> int:
    return len(bytearray(size))


def vips_materialise(side: int) -> int:
    import pyvips  # noqa: PLC0415 - only this target needs libvips

    image = pyvips.Image.black(side, side, bands=3).copy_memory()
    return int(image.width)


def segfault() -> None:
    ctypes.string_at(0)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signal.Signals(signum))


def exit_quietly() -> None:
    os._exit(3)


def report_steps(steps: int, pause: float) -> int:
    for step in range(steps + 1):
        report_progress(step / steps)
        time.sleep(pause)
    return steps


def report_outside_sandbox() -> None:
    report_progress(0.5)


def unpicklable_result() -> object:
    return lambda: None


_held: list[bytearray] = []


def hold(size: int) -> int:
    """Keeps `size` bytes alive in this process after returning (a leaky decoder): its pid."""
    block = bytearray(size)
    for offset in range(0, size, 4096):  # touch every page: resident, not just reserved
        block[offset] = 1
    _held.append(block)
    return os.getpid()


def leave_helper(pid_file: str) -> int:
    """Starts a helper process and returns without waiting for it: its own pid."""
    helper = subprocess.Popen(["sleep", "100"])
    Path(pid_file).write_text(f"{os.getpid()} {helper.pid}")
    return os.getpid()


def leave_thread(seconds: float) -> int:
    """Starts a thread that reports progress later and returns without waiting: its pid."""

    def later() -> None:
        time.sleep(seconds)
        report_progress(0.5)

    threading.Thread(target=later, daemon=True).start()
    return os.getpid()


def traced_steps(count: int) -> int:
    """Steps recorded as spans (mesh.tracing.stage), as a pipeline's are."""
    for number in range(1, count + 1):
        with tracing.stage(f"step {number}", pid=os.getpid()):
            pass
    return count
