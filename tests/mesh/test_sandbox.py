"""Real child processes: results, typed failures, deadlines, memory caps, crashes, cleanup."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mesh.errors import MeshError, Reason
from mesh.sandbox import (
    PoolSettings,
    SandboxLimits,
    configure,
    preload,
    report_progress,
    run_isolated,
    shutdown,
)
from tests.mesh import sandbox_targets as targets

QUICK = SandboxLimits(wall_seconds=10, memory_bytes=None)
# For calls that touch hundreds of MiB: slow on a loaded machine, never a timing test.
ROOMY = SandboxLimits(wall_seconds=120, memory_bytes=None)


@pytest.fixture(scope="module", autouse=True)
def _forkserver() -> None:
    preload(["tests.mesh.sandbox_targets"])


@pytest.fixture(autouse=True)
async def _fresh_pool() -> AsyncIterator[None]:
    """Each test starts with no idle sandbox processes and the default recycling rules."""
    await shutdown()
    configure(PoolSettings())
    yield
    await shutdown()
    configure(PoolSettings())


def _gone(pid: int) -> bool:
    """True once `pid` no longer exists, not even as an unreaped zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _eventually_gone(pid: int) -> bool:
    for _ in range(500):
        if _gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


def _pids_in(pid_file: Path) -> tuple[int, int] | None:
    try:
        child, grandchild = pid_file.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(child), int(grandchild)


async def _read_pids(pid_file: Path, within: float = 60.0) -> tuple[int, int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pids := _pids_in(pid_file):
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError("the sandboxed function never started")


async def test_returns_the_function_result() -> None:
    assert await run_isolated(targets.add, 2, 3, limits=QUICK) == 5


async def test_calls_share_a_pooled_process_until_tasks_per_process() -> None:
    configure(PoolSettings(tasks_per_process=3))
    pids = [await run_isolated(targets.child_pid, limits=QUICK) for _ in range(4)]
    assert pids[0] == pids[1] == pids[2] != os.getpid()
    assert pids[3] != pids[0]
    assert await _eventually_gone(pids[0])


async def test_one_task_per_process_gives_each_call_a_fresh_process() -> None:
    configure(PoolSettings(tasks_per_process=1))
    first = await run_isolated(targets.child_pid, limits=QUICK)
    second = await run_isolated(targets.child_pid, limits=QUICK)
    assert len({first, second, os.getpid()}) == 3


async def test_a_pooled_process_killed_mid_call_fails_that_call_and_is_replaced(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pids"
    call = asyncio.create_task(
        run_isolated(targets.sleep_with_grandchild, str(pid_file), limits=QUICK)
    )
    child, grandchild = await _read_pids(pid_file)
    os.kill(child, signal.SIGKILL)
    with pytest.raises(MeshError) as raised:
        await call
    assert raised.value.reason is Reason.RESOURCE_EXHAUSTED  # SIGKILL from outside: OOM killer
    assert _gone(grandchild)
    after = await run_isolated(targets.child_pid, limits=QUICK)
    assert after != child
    assert await run_isolated(targets.add, 2, 2, limits=QUICK) == 4


async def test_a_pooled_process_killed_while_idle_is_replaced_without_failing_a_call() -> None:
    idle = await run_isolated(targets.child_pid, limits=QUICK)
    os.kill(idle, signal.SIGKILL)
    assert await _eventually_gone(idle)
    assert await run_isolated(targets.child_pid, limits=QUICK) != idle


async def test_a_process_over_the_rss_cap_is_retired_after_its_call() -> None:
    configure(PoolSettings(recycle_rss_bytes=400 * 1024 * 1024))
    small = await run_isolated(targets.hold, 1024 * 1024, limits=ROOMY)
    assert await run_isolated(targets.child_pid, limits=ROOMY) == small
    big = await run_isolated(targets.hold, 500 * 1024 * 1024, limits=ROOMY)
    assert big == small
    assert await run_isolated(targets.child_pid, limits=ROOMY) != big
    assert await _eventually_gone(big)


async def test_a_process_that_used_half_its_address_space_cap_is_retired() -> None:
    limits = SandboxLimits(wall_seconds=120, memory_bytes=800 * 1024 * 1024)
    configure(PoolSettings(recycle_rss_bytes=None))
    first = await run_isolated(targets.hold, 500 * 1024 * 1024, limits=limits)
    assert await run_isolated(targets.child_pid, limits=limits) != first


async def test_a_helper_left_running_retires_the_process_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    first = await run_isolated(targets.leave_helper, str(pid_file), limits=QUICK)
    _, helper = await _read_pids(pid_file)
    assert _gone(helper)
    assert await run_isolated(targets.child_pid, limits=QUICK) != first


async def test_a_thread_left_running_retires_the_process() -> None:
    first = await run_isolated(targets.leave_thread, 0.5, limits=QUICK)
    received: list[float] = []
    await run_isolated(time.sleep, 1.0, limits=QUICK, on_progress=received.append)
    assert received == []
    assert await run_isolated(targets.child_pid, limits=QUICK) != first


async def test_a_crash_replaces_the_process_and_a_mesh_error_keeps_it() -> None:
    before = await run_isolated(targets.child_pid, limits=QUICK)
    with pytest.raises(MeshError):
        await run_isolated(targets.reject, "riff", limits=QUICK)
    assert await run_isolated(targets.child_pid, limits=QUICK) == before
    with pytest.raises(MeshError):
        await run_isolated(targets.fail_unexpectedly, limits=QUICK)
    after = await run_isolated(targets.child_pid, limits=QUICK)
    assert after != before
    with pytest.raises(MeshError):
        await run_isolated(targets.segfault, limits=QUICK)
    assert await run_isolated(targets.child_pid, limits=QUICK) != after


async def test_each_memory_cap_has_its_own_processes() -> None:
    # Generous deadlines: the allocation below is zero-filled, slow on a loaded machine.
    capped = SandboxLimits(wall_seconds=120, memory_bytes=600 * 1024 * 1024)
    free = SandboxLimits(wall_seconds=120, memory_bytes=None)
    uncapped = await run_isolated(targets.child_pid, limits=free)
    assert await run_isolated(targets.child_pid, limits=capped) != uncapped
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.allocate, 700 * 1024**2, limits=capped)
    assert raised.value.reason is Reason.RESOURCE_EXHAUSTED
    assert await run_isolated(targets.allocate, 700 * 1024**2, limits=free) == 700 * 1024**2


async def test_children_come_from_the_fork_server_not_from_this_process() -> None:
    # A plain fork would copy this process's gRPC core and NATS connection into the child.
    assert await run_isolated(targets.parent_pid, limits=QUICK) != os.getpid()


async def test_mesh_error_keeps_reason_message_and_detail() -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.reject, "riff", limits=QUICK)
    assert raised.value.reason is Reason.UNSUPPORTED_FORMAT
    assert raised.value.message == "Not an image we can read."
    assert raised.value.detail == {"sniffed": "riff"}


async def test_unexpected_exception_is_internal_and_logged_not_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="mesh.sandbox"), pytest.raises(MeshError) as raised:
        await run_isolated(targets.fail_unexpectedly, limits=QUICK)
    assert raised.value.reason is Reason.INTERNAL
    assert "/srv/scratch" not in raised.value.message
    assert "ValueError: secret internal path /srv/scratch/abc" in caplog.text


async def test_unpicklable_result_is_internal() -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.unpicklable_result, limits=QUICK)
    assert raised.value.reason is Reason.INTERNAL


async def test_deadline_kills_the_child_and_its_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(MeshError) as raised:
        await run_isolated(
            targets.sleep_with_grandchild,
            str(pid_file),
            limits=SandboxLimits(wall_seconds=1.0, memory_bytes=None),
        )
    elapsed = time.monotonic() - started
    assert raised.value.reason is Reason.TIMEOUT
    assert raised.value.message == "The conversion took longer than 1 s and was stopped."
    # Never before the deadline; and ended by it, not by the child (which sleeps 100 s).
    assert 1.0 <= elapsed < 60
    child, grandchild = await _read_pids(pid_file)
    assert _gone(child)
    assert _gone(grandchild)


async def test_cancelling_the_caller_kills_the_child_and_its_grandchildren(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pids"
    call = asyncio.create_task(
        run_isolated(targets.sleep_with_grandchild, str(pid_file), limits=QUICK)
    )
    child, grandchild = await _read_pids(pid_file)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _gone(child)
    assert _gone(grandchild)


async def test_allocation_over_the_memory_cap_is_resource_exhausted() -> None:
    limits = SandboxLimits(wall_seconds=10, memory_bytes=300 * 1024 * 1024)
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.allocate, 2 * 1024**3, limits=limits)
    assert raised.value.reason is Reason.RESOURCE_EXHAUSTED
    assert raised.value.detail == {"limit_bytes": 300 * 1024 * 1024}


async def test_allocation_under_the_memory_cap_succeeds() -> None:
    limits = SandboxLimits(wall_seconds=10, memory_bytes=600 * 1024 * 1024)
    assert await run_isolated(targets.allocate, 50 * 1024 * 1024, limits=limits) == 50 * 1024**2


async def test_libvips_allocation_failure_is_resource_exhausted() -> None:
    limits = SandboxLimits(wall_seconds=10, memory_bytes=400 * 1024 * 1024)
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.vips_materialise, 20_000, limits=limits)
    assert raised.value.reason is Reason.RESOURCE_EXHAUSTED


async def test_segfault_is_corrupt_input_and_the_next_call_works() -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.segfault, limits=QUICK)
    assert raised.value.reason is Reason.CORRUPT_INPUT
    assert raised.value.message == "The decoder crashed on this input."
    assert await run_isolated(targets.add, 1, 1, limits=QUICK) == 2


@pytest.mark.parametrize("signum", [signal.SIGABRT, signal.SIGBUS, signal.SIGFPE])
async def test_death_by_signal_is_corrupt_input(signum: signal.Signals) -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.kill_self, int(signum), limits=QUICK)
    assert raised.value.reason is Reason.CORRUPT_INPUT


async def test_sigkill_not_sent_by_the_sandbox_is_resource_exhausted() -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.kill_self, int(signal.SIGKILL), limits=QUICK)
    assert raised.value.reason is Reason.RESOURCE_EXHAUSTED


async def test_exit_without_a_result_is_internal() -> None:
    with pytest.raises(MeshError) as raised:
        await run_isolated(targets.exit_quietly, limits=QUICK)
    assert raised.value.reason is Reason.INTERNAL


async def test_progress_arrives_in_order_and_at_most_five_per_second() -> None:
    received: list[float] = []
    started = time.monotonic()
    steps = await run_isolated(
        targets.report_steps, 60, 0.02, limits=QUICK, on_progress=received.append
    )
    elapsed = time.monotonic() - started
    assert steps == 60
    assert received[0] == 0.0
    assert received == sorted(set(received))
    assert all(0.0 <= fraction <= 1.0 for fraction in received)
    assert 4 <= len(received) <= 1 + math.ceil(elapsed / 0.2)


async def test_progress_of_a_second_call_in_the_same_process_starts_anew() -> None:
    first: list[float] = []
    second: list[float] = []
    await run_isolated(targets.report_steps, 2, 0.0, limits=QUICK, on_progress=first.append)
    await run_isolated(targets.report_steps, 2, 0.0, limits=QUICK, on_progress=second.append)
    assert first == second == [0.0]


def test_report_progress_outside_a_sandbox_does_nothing() -> None:
    report_progress(0.5)
    targets.report_outside_sandbox()


async def test_waiting_does_not_block_the_event_loop() -> None:
    ticks = 0
    sandboxes_done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not sandboxes_done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    async def sandboxes() -> tuple[None, None]:
        limits = SandboxLimits(wall_seconds=60, memory_bytes=None)
        try:
            return await asyncio.gather(
                run_isolated(time.sleep, 2, limits=limits),
                run_isolated(time.sleep, 2, limits=limits),
            )
        finally:
            sandboxes_done.set()

    results, _ = await asyncio.gather(sandboxes(), tick())
    assert list(results) == [None, None]
    # A loop blocked while waiting would not have ticked until both children were done: it
    # ticks many times however slow the machine is (each child sleeps 2 s).
    assert ticks >= 20, ticks


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "", **labels}) or 0.0


async def test_the_pool_reports_its_processes_starts_and_recycles() -> None:
    configure(PoolSettings(tasks_per_process=2))
    starts = _metric("convertmesh_sandbox_starts_total")
    by_calls = _metric("convertmesh_sandbox_recycles_total", reason="calls")
    crashes = _metric("convertmesh_sandbox_recycles_total", reason="crash")
    for _ in range(3):
        await run_isolated(targets.noop, limits=QUICK)
    assert _metric("convertmesh_sandbox_processes", state="idle") == 1
    assert _metric("convertmesh_sandbox_processes", state="busy") == 0
    assert _metric("convertmesh_sandbox_resident_memory_bytes") > 1024 * 1024
    with pytest.raises(MeshError):
        await run_isolated(targets.segfault, limits=QUICK)
    assert _metric("convertmesh_sandbox_starts_total") == starts + 2
    assert _metric("convertmesh_sandbox_recycles_total", reason="calls") == by_calls + 1
    assert _metric("convertmesh_sandbox_recycles_total", reason="crash") == crashes + 1
    assert _metric("convertmesh_sandbox_processes", state="idle") == 0
    assert _metric("convertmesh_sandbox_resident_memory_bytes") == 0
