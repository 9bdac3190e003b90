"""Runs one hostile-input conversion in a throwaway child process with a deadline and a memory cap.

A decoder that hangs, balloons or segfaults must take down only its child, never the worker. The
children come from the `forkserver` start method: the server is a fresh interpreter (fork + exec),
so it never holds the worker's gRPC core or NATS connection, both of which break across fork().
Heavy imports (pyvips, av) are preloaded into the server once, so each call pays only a fork.

Each child calls setsid(), so the parent can SIGKILL the whole tree (ffmpeg helpers included) as
one process group. The worker makes itself a child subreaper: orphans of a killed child are
re-parented to it rather than to a PID 1 that may never reap them, and are reaped here.

How a failure is classified:
- `MeshError` raised by the function: re-raised as is (reason, message, detail).
- `MemoryError` (Python, and PyAV's ENOMEM, which subclasses it) or an exception whose text is a C
  library's allocation failure (libvips "out of memory", "Cannot allocate memory", bad_alloc):
  RESOURCE_EXHAUSTED. Unchecked failed mallocs in C usually end as SIGSEGV/SIGABRT instead;
  those cannot be told apart from a decoder bug and are reported as CORRUPT_INPUT. Pipelines
  should let allocation failures propagate rather than wrap them in a MeshError themselves.
- SIGKILL that the sandbox did not send: the kernel OOM killer (cgroup limit), RESOURCE_EXHAUSTED.
- Any other signal: CORRUPT_INPUT, since the input is what varies between calls.
- A write that failed for lack of disk space (ENOSPC anywhere in the exception's chain, or its
  text): RESOURCE_EXHAUSTED, to be tried again (`scratch.disk_full_error`).
- Anything else: INTERNAL; the traceback is logged here and never shown to the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar, cast

from mesh import scratch
from mesh.errors import MeshError, Reason, reason_named

log = logging.getLogger(__name__)

T = TypeVar("T")

_CONTEXT = multiprocessing.get_context("forkserver")
_PROGRESS_INTERVAL = 0.2
_EXIT_SECONDS = 1.0
_REAP_SECONDS = 2.0
_PR_SET_CHILD_SUBREAPER = 36
_M_ARENA_MAX = -8
_ALLOCATION_FAILURES = ("out of memory", "cannot allocate memory", "bad_alloc")

_subreaper_tried = False
_unreaped_groups: set[int] = set()


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float
    # RLIMIT_AS: address space, so the fork server's mapped libraries count too (about 175 MiB
    # with pyvips and av preloaded); None means no cap.
    memory_bytes: int | None


def preload(modules: Sequence[str]) -> None:
    """Starts the fork server with `modules` imported; call at worker start, before gRPC/NATS.

    Without it the server starts on the first call, blocking the loop while it imports, with the
    default list; a server already running keeps its old list. `__main__` is preloaded too (once,
    as `__mp_main__`) because each child would otherwise re-run a script-style main module:
    guard it with `if __name__ == "__main__"`.
    """
    _CONTEXT.set_forkserver_preload(["__main__", __name__, *modules])
    _become_subreaper()
    multiprocessing.forkserver.ensure_running()


async def run_isolated(
    func: Callable[..., T],
    *args: Any,
    limits: SandboxLimits,
    on_progress: Callable[[float], None] | None = None,
) -> T:
    """Runs `func(*args)` (module-level, picklable, small picklable result) in a fresh child."""
    _become_subreaper()
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=_child_main,
        args=(sender, func, args, limits.memory_bytes),
        name=f"sandbox:{getattr(func, '__name__', 'call')}",
        daemon=True,
    )
    try:
        process.start()
    except BaseException:
        receiver.close()
        raise
    finally:
        sender.close()
    # The child calls setsid() first thing, so its pid is its process-group id.
    group = cast(int, process.pid)
    kind = "unfinished"
    try:
        kind, payload = await _await_outcome(process, receiver, limits.wall_seconds, on_progress)
    finally:
        receiver.close()
        await _dispose(process, group, graceful=kind not in ("unfinished", "timeout"))
    return cast(T, _result_or_raise(func, kind, payload, limits))


def report_progress(fraction: float) -> None:
    """Sends progress (0.0..1.0) from inside a sandboxed call; a no-op anywhere else."""
    if _channel is not None:
        _channel.progress(min(max(fraction, 0.0), 1.0))


class _Channel:
    """The child's end of the pipe: progress is throttled, and calls may come from any thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._last_sent = -math.inf

    def progress(self, fraction: float) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_sent < _PROGRESS_INTERVAL:
                return
            self._last_sent = now
            # OSError: the parent has gone or given up and is about to kill this process.
            with contextlib.suppress(OSError):
                self._conn.send(("progress", fraction))

    def finish(self, message: tuple[str, Any]) -> None:
        with self._lock:
            try:
                self._conn.send(message)
            except Exception:  # an unpicklable result or detail
                self._conn.send(("crash", traceback.format_exc()))


_channel: _Channel | None = None


def _child_main(
    conn: Connection, func: Callable[..., Any], args: tuple[Any, ...], memory_bytes: int | None
) -> None:
    global _channel  # noqa: PLW0603 - this process exists only to run this one call
    os.setsid()
    if memory_bytes is not None:
        _cap_memory(memory_bytes)
    _channel = _Channel(conn)
    message: tuple[str, Any]
    try:
        message = ("ok", func(*args))
    except BaseException as error:
        message = _failure(error)
    _channel.finish(message)


def _failure(error: BaseException) -> tuple[str, Any]:
    # First: a write that failed for lack of disk space, whatever a decoder made of it (they
    # report it as damaged input).
    if scratch.is_disk_error(error):
        return ("disk", None)
    if isinstance(error, MeshError):
        return ("error", (error.reason.value, error.message, error.detail))
    if isinstance(error, MemoryError) or _is_allocation_failure(error):
        return ("memory", None)
    return ("crash", traceback.format_exc())


def _cap_memory(memory_bytes: int) -> None:
    # glibc reserves 64 MiB of address space per thread arena; with a libvips thread pool that
    # reservation, not real use, would hit RLIMIT_AS first. Without glibc the cap still applies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _is_allocation_failure(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _ALLOCATION_FAILURES)


async def _await_outcome(
    process: BaseProcess,
    receiver: Connection,
    wall_seconds: float,
    on_progress: Callable[[float], None] | None,
) -> tuple[str, Any]:
    deadline = time.monotonic() + wall_seconds
    pipe_open = True
    while True:
        # Drain before looking at the exit: the child writes its result before it exits.
        if pipe_open:
            try:
                while receiver.poll():
                    kind, payload = receiver.recv()
                    if kind != "progress":
                        return kind, payload
                    if on_progress is not None:
                        on_progress(payload)
            except EOFError:
                pipe_open = False
        if process.exitcode is not None:
            return "died", process.exitcode
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout", None
        watched = [receiver.fileno(), process.sentinel] if pipe_open else [process.sentinel]
        await _readable(watched, remaining)


async def _readable(fds: Sequence[int], within: float) -> None:
    """Returns once one of `fds` is readable or `within` seconds passed, not blocking the loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    for fd in fds:
        loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, within)
    except TimeoutError:
        pass
    finally:
        for fd in fds:
            loop.remove_reader(fd)


async def _dispose(process: BaseProcess, group: int, *, graceful: bool) -> None:
    """Ends the child and everything it started, and reaps what was re-parented to us."""
    try:
        if graceful:
            # It has sent its result and is exiting; a clean exit flushes its stdio.
            await _exited(process, _EXIT_SECONDS)
    finally:
        _kill_group(group)
        _unreaped_groups.add(group)
    await _exited(process, _REAP_SECONDS)
    if process.exitcode is not None:
        process.close()
    await _reap_groups()


async def _exited(process: BaseProcess, within: float) -> None:
    deadline = time.monotonic() + within
    while process.exitcode is None and (remaining := deadline - time.monotonic()) > 0:
        await _readable([process.sentinel], remaining)


def _result_or_raise(
    func: Callable[..., Any], kind: str, payload: Any, limits: SandboxLimits
) -> Any:
    name = getattr(func, "__qualname__", repr(func))
    if kind == "ok":
        return payload
    if kind == "error":
        reason, message, detail = payload
        raise MeshError(reason_named(reason), message, **detail)
    if kind == "timeout":
        raise MeshError(
            Reason.TIMEOUT,
            f"The conversion took longer than {limits.wall_seconds:g} s and was stopped.",
            limit_seconds=limits.wall_seconds,
        )
    if kind == "memory":
        raise _memory_error(limits)
    if kind == "disk":
        raise scratch.disk_full_error()
    if kind == "crash":
        log.error("sandboxed %s failed:\n%s", name, payload)
        raise MeshError(Reason.INTERNAL)
    exitcode = cast(int, payload)
    if exitcode == -signal.SIGKILL:
        log.warning("sandboxed %s was killed by SIGKILL (out-of-memory killer?)", name)
        raise _memory_error(limits)
    if exitcode < 0:
        log.warning("sandboxed %s died from signal %s", name, _signal_name(-exitcode))
        raise MeshError(Reason.CORRUPT_INPUT, "The decoder crashed on this input.")
    log.error("sandboxed %s exited with status %d without a result", name, exitcode)
    raise MeshError(Reason.INTERNAL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _memory_error(limits: SandboxLimits) -> MeshError:
    if limits.memory_bytes is None:
        return MeshError(Reason.RESOURCE_EXHAUSTED)
    megabytes = limits.memory_bytes // (1024 * 1024)
    return MeshError(
        Reason.RESOURCE_EXHAUSTED,
        f"The conversion needed more than {megabytes} MiB of memory and was stopped.",
        limit_bytes=limits.memory_bytes,
    )


def _become_subreaper() -> None:
    global _subreaper_tried  # noqa: PLW0603 - a once-per-process kernel setting
    if _subreaper_tried:
        return
    _subreaper_tried = True
    try:
        done = ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        done = False
    if not done:
        log.warning("cannot become a child subreaper; killed sandboxes may leave zombies")


def _kill_group(group: int) -> None:
    # Before setsid() the child is not yet a group leader: kill it by pid as well.
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(group, signal.SIGKILL)


async def _reap_groups() -> None:
    """Waits until every killed group is gone, reaping the members re-parented to this process."""
    deadline = time.monotonic() + _REAP_SECONDS
    while True:
        for group in list(_unreaped_groups):
            try:
                os.killpg(group, signal.SIGKILL)  # zombies count: the group lives until reaped
            except (ProcessLookupError, PermissionError):
                _unreaped_groups.discard(group)
        if not _unreaped_groups:
            return
        _reap_orphans(_unreaped_groups)
        if time.monotonic() > deadline:
            log.warning("sandbox process groups %s are still present", sorted(_unreaped_groups))
            return
        await asyncio.sleep(0.005)


def _reap_orphans(groups: set[int]) -> None:
    me = os.getpid()
    for members in _members_by_group(groups).values():
        for pid, parent in members:
            if parent == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)


def _members_by_group(groups: set[int]) -> dict[int, list[tuple[int, int]]]:
    """(pid, parent pid) of each live or zombie process in `groups`, read from /proc."""
    found: dict[int, list[tuple[int, int]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        group = int(fields[2])
        if group in groups:
            found.setdefault(group, []).append((int(entry.name), int(fields[1])))
    return found
