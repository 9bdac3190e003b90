"""Runs hostile-input conversions in sandbox processes with a deadline and a memory cap.

A decoder that hangs, balloons or segfaults must take down only its sandbox process, never the
worker. Sandbox processes come from the `forkserver` start method: the server is a fresh
interpreter (fork + exec), so it never holds the worker's gRPC core or NATS connection, both of
which break across fork(). Heavy imports (pyvips, av) are preloaded into the server once.

Sandbox processes are pooled: each serves up to `tasks_per_process` calls, one at a time, so a
call pays neither a fork nor the codec libraries' start-up (on a 500 px thumbnail that was more
CPU than the conversion). A process is replaced, never reused, after anything but a clean
result or a `MeshError`: a crash, a signal, a timeout, a cancelled caller, an allocation
failure, an unexpected exception; and it is retired when its RSS after a call is over
`recycle_rss_bytes`, when it used more than half of its address-space cap, or when a process or
Python thread it started is still alive after the call. `tasks_per_process=1` gives every call
a fresh process.

What one call leaves behind in a pooled process (heap, libraries' state) is there for the next,
which may be another tenant's, as it already was in the worker: the pipelines keep no state
between calls (libvips' operation cache is off). Where that matters more than the start-up cost,
`tasks_per_process=1` restores a process per call.

Each sandbox process calls setsid(), so the parent can SIGKILL it and everything it started
(ffmpeg helpers included) as one process group, and is a child subreaper, so it can tell
whether helpers outlived a call. The worker is a child subreaper too: orphans of a killed
sandbox are re-parented to it rather than to a PID 1 that may never reap them, and are reaped
here.

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

Tracing: each call is a span in the worker ("sandbox"), and the call takes the trace context
with its arguments; the spans the function records in the sandbox process (its pipeline's
steps, `mesh.tracing.stage`) come back with its result and are exported by the worker, so a
sandbox process opens no connection for them. The pool's size, starts, recycles (and why) and
the sandboxes' resident memory are metrics (`convertmesh_sandbox_*`).
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

from mesh import scratch, telemetry, tracing
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

_LIBC = ctypes.CDLL(None)

_subreaper_tried = False
_unreaped_groups: set[int] = set()


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float
    # RLIMIT_AS: address space, so the fork server's mapped libraries count too (about 175 MiB
    # with pyvips and av preloaded); None means no cap.
    memory_bytes: int | None


@dataclass(frozen=True)
class PoolSettings:
    """When a pooled sandbox process is replaced (see the module docstring)."""

    tasks_per_process: int = 200
    recycle_rss_bytes: int | None = 512 * 1024 * 1024
    # Idle processes kept per memory cap; more are retired as their calls end.
    max_idle: int = 4


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


def configure(settings: PoolSettings) -> None:
    """Sets how this process's pool recycles; processes already idle follow the new rules.
    The pool's gauges are labelled with `telemetry.service_name()`."""
    _POOL.settings = settings
    service = telemetry.service_name()
    idle = telemetry.SANDBOX_PROCESSES.labels(service, "idle")
    idle.set_function(lambda: sum(len(members) for members in _POOL.idle.values()))
    telemetry.SANDBOX_PROCESSES.labels(service, "busy").set_function(lambda: _POOL.busy)
    telemetry.SANDBOX_RSS.labels(service).set_function(_POOL.resident_bytes)


async def shutdown() -> None:
    """Ends every idle sandbox process (calls in flight end their own)."""
    for members in _POOL.idle.values():
        while members:
            await members.pop().dispose(graceful=False)
    if _retiring:
        await asyncio.gather(*_retiring, return_exceptions=True)
        _retiring.clear()


async def run_isolated(
    func: Callable[..., T],
    *args: Any,
    limits: SandboxLimits,
    on_progress: Callable[[float], None] | None = None,
) -> T:
    """Runs `func(*args)` (module-level, picklable, small picklable result) in a sandbox
    process of the pool, one whose memory cap is `limits.memory_bytes`."""
    _become_subreaper()
    with tracing.span("sandbox") as current:
        member = _POOL.take(limits.memory_bytes)
        carrier = tracing.carrier()
        if not member.send(func, args, carrier):
            await member.dispose(graceful=False)
            member = _Member.start(limits.memory_bytes)
            member.send(func, args, carrier)  # if this one died at once, its exit status tells why
        tracing.set_attributes(current, {"sandbox.pid": member.group, "sandbox.call": member.calls})
        kind, payload = "unfinished", None
        retired: str | None = "cancelled"
        _POOL.busy += 1
        try:
            kind, payload, stats = await member.outcome(limits.wall_seconds, on_progress)
            if stats is not None:
                tracing.adopt(stats.spans)
            retired = _POOL.retires(member, kind, stats, limits.memory_bytes)
        finally:
            _POOL.busy -= 1
            if retired is None:
                _POOL.give_back(member)
            else:
                telemetry.SANDBOX_RECYCLES.labels(telemetry.service_name(), retired).inc()
                await member.dispose(graceful=kind not in ("unfinished", "timeout"))
        tracing.set_attributes(current, {"sandbox.outcome": kind})
        return cast(T, _result_or_raise(func, kind, payload, limits))


def report_progress(fraction: float) -> None:
    """Sends progress (0.0..1.0) from inside a sandboxed call; a no-op anywhere else."""
    if _channel is not None:
        _channel.progress(min(max(fraction, 0.0), 1.0))


@dataclass
class _Stats:
    """What a sandbox process says about itself after each call."""

    rss_bytes: int
    vm_bytes: int
    helpers_alive: bool
    # What the call recorded for the worker's trace (mesh.tracing).
    spans: list[tracing.SpanRecord]


class _Member:
    """One pooled sandbox process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection, memory_bytes: int | None) -> None:
        self.process = process
        self.conn = conn
        self.memory_bytes = memory_bytes
        # The child calls setsid() first thing, so its pid is its process-group id.
        self.group = cast(int, process.pid)
        self.calls = 0

    @classmethod
    def start(cls, memory_bytes: int | None) -> _Member:
        mine, theirs = _CONTEXT.Pipe(duplex=True)
        process = _CONTEXT.Process(
            target=_member_main, args=(theirs, memory_bytes), name="sandbox", daemon=True
        )
        try:
            process.start()
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        member = cls(process, mine, memory_bytes)
        _POOL.live.add(member.group)
        telemetry.SANDBOX_STARTS.labels(telemetry.service_name()).inc()
        return member

    @property
    def alive(self) -> bool:
        return self.process.exitcode is None

    def send(
        self, func: Callable[..., Any], args: tuple[Any, ...], carrier: dict[str, str]
    ) -> bool:
        """Hands the call (and the trace context) over; False when the process has gone (it
        died while idle)."""
        try:
            self.conn.send((func, args, _POOL.settings.recycle_rss_bytes, carrier))
        except (BrokenPipeError, ConnectionResetError):
            return False
        self.calls += 1
        return True

    async def outcome(
        self, wall_seconds: float, on_progress: Callable[[float], None] | None
    ) -> tuple[str, Any, _Stats | None]:
        kind, payload = await _await_outcome(self.process, self.conn, wall_seconds, on_progress)
        if kind in ("died", "timeout"):
            return kind, payload, None
        result, stats = payload
        return kind, result, stats

    async def dispose(self, *, graceful: bool) -> None:
        """Ends the process and everything it started, and reaps what was re-parented to us."""
        _POOL.live.discard(self.group)
        self.conn.close()  # a graceful member reads EOF and exits
        await _dispose(self.process, self.group, graceful=graceful)


class _Pool:
    def __init__(self) -> None:
        self.settings = PoolSettings()
        self.idle: dict[int | None, list[_Member]] = {}
        self.busy = 0
        self.live: set[int] = set()  # pids of the processes started and not disposed of

    def resident_bytes(self) -> float:
        """Resident memory of every live sandbox process together (a metrics scrape)."""
        total = 0
        for pid in list(self.live):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/statm") as statm,
            ):
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return float(total)

    def take(self, memory_bytes: int | None) -> _Member:
        members = self.idle.get(memory_bytes, [])
        while members:
            member = members.pop()
            if member.alive:
                return member
            # Died while idle (killed from outside): its calls were all answered; its group
            # is reaped with the next disposal.
            member.conn.close()
            member.process.close()
            _kill_group(member.group)
            _unreaped_groups.add(member.group)
            self.live.discard(member.group)
        return _Member.start(memory_bytes)

    def retires(
        self, member: _Member, kind: str, stats: _Stats | None, memory_bytes: int | None
    ) -> str | None:
        """Why the process must not serve another call, or None when it may."""
        s = self.settings
        if kind not in ("ok", "error") or stats is None:
            return {"died": "crash", "crash": "crash", "memory": "memory"}.get(kind, kind)
        if stats.helpers_alive:
            return "helpers"
        if member.calls >= s.tasks_per_process:
            return "calls"
        if s.recycle_rss_bytes is not None and stats.rss_bytes > s.recycle_rss_bytes:
            return "rss"
        if memory_bytes is not None and stats.vm_bytes > memory_bytes // 2:
            return "address_space"
        return None

    def give_back(self, member: _Member) -> None:
        members = self.idle.setdefault(member.memory_bytes, [])
        if len(members) < self.settings.max_idle:
            members.append(member)
            return
        telemetry.SANDBOX_RECYCLES.labels(telemetry.service_name(), "surplus").inc()
        self.live.discard(member.group)
        member.conn.close()
        _retiring.add(asyncio.ensure_future(_dispose(member.process, member.group, graceful=True)))
        _retiring.difference_update({task for task in _retiring if task.done()})


_POOL = _Pool()
_retiring: set[asyncio.Future[None]] = set()


class _Channel:
    """The child's end of the pipe: progress is throttled, and calls may come from any thread.
    Between calls nothing is sent (and a process whose call left a thread running is retired).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._last_sent = -math.inf
        self._open = False

    def begin(self) -> None:
        with self._lock:
            self._last_sent = -math.inf
            self._open = True

    def progress(self, fraction: float) -> None:
        with self._lock:
            now = time.monotonic()
            if not self._open or now - self._last_sent < _PROGRESS_INTERVAL:
                return
            self._last_sent = now
            # OSError: the parent has gone or given up and is about to kill this process.
            with contextlib.suppress(OSError):
                self._conn.send(("progress", fraction))

    def finish(self, message: tuple[str, Any], stats: _Stats) -> None:
        kind, payload = message
        with self._lock:
            self._open = False
            try:
                self._conn.send((kind, (payload, stats)))
            except OSError:
                raise  # the parent has gone: so does this process
            except Exception:  # an unpicklable result or detail
                self._conn.send(("crash", (traceback.format_exc(), stats)))


_channel: _Channel | None = None


def _member_main(conn: Connection, memory_bytes: int | None) -> None:
    """A pooled sandbox process: runs one call after another until the pipe closes."""
    global _channel  # noqa: PLW0603 - this process exists only to run these calls
    os.setsid()
    _subreaper()
    if memory_bytes is not None:
        _cap_memory(memory_bytes)
    _channel = _Channel(conn)
    threads = threading.active_count()
    while True:
        try:
            func, args, recycle_rss_bytes, carrier = conn.recv()
        except EOFError:
            return
        _channel.begin()
        with tracing.sandboxed(carrier) as spans:
            message = _call(func, args)
        helpers = _reap_helpers() or threading.active_count() > threads
        stats = _Stats(*_memory_now(recycle_rss_bytes), helpers_alive=helpers, spans=spans)
        _channel.finish(message, stats)
        del func, args, message


def _call(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return ("ok", func(*args))
    except BaseException as error:
        return _failure(error)


def _memory_now(recycle_rss_bytes: int | None) -> tuple[int, int]:
    """(RSS, address space) of this process. Over the RSS cap, freed heap is handed back to the
    system first: only then, since returning it after every call costs more CPU in page faults
    on the next call than the call itself (15 ms on a 30 ms thumbnail)."""
    rss, size = _statm()
    if recycle_rss_bytes is not None and rss > recycle_rss_bytes:
        with contextlib.suppress(AttributeError):
            _LIBC.malloc_trim(0)
        rss, size = _statm()
    return rss, size


def _statm() -> tuple[int, int]:
    with open("/proc/self/statm") as statm:
        size, resident = statm.read().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(resident) * page, int(size) * page


def _reap_helpers() -> bool:
    """Reaps finished helper processes; True when one is still running (or an orphan of one
    was re-parented here and lives on)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


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
        _LIBC.mallopt(_M_ARENA_MAX, 2)
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
    if not _subreaper():
        log.warning("cannot become a child subreaper; killed sandboxes may leave zombies")


def _subreaper() -> bool:
    try:
        return bool(_LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0)
    except AttributeError:
        return False


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
