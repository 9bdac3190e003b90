"""A worker's scratch space: one folder per process, one folder per task inside it, a quota per
task, and a full disk told apart from bad input.

Under SCRATCH_DIR each worker process owns `<service>.<pid>.<token>/`, locked (flock on its
`.lock`) for as long as the process lives; its `tmp/` is the process's TMPDIR (the sandbox's
fork server and its children write there too) and each task gets a `task-*` folder. A worker
that starts removes every folder whose lock nobody holds: its owner died without cleaning up
(SIGKILL, the OOM killer), and what it left is users' files. The lock, not the pid, says who is
alive: pids are reused, and workers of several services (or several of one) may share SCRATCH_DIR.

A task's folder is measured while the task runs (`quota`): past its limit the task is stopped
with RESOURCE_EXHAUSTED, whatever wrote the bytes (a converter, ffmpeg, an extraction). A disk
that fills up is not the input's fault: `disk_full_error` is RESOURCE_EXHAUSTED marked to be
retried later (another worker, or this one once space is free, may succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from mesh import settings
from mesh.errors import MeshError, Reason, RetryLaterError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# `<service>.<pid>.<token>`, and `.new-<token>` while a folder is being set up.
_OWNED = re.compile(r"[a-z][a-z0-9_-]*\.\d+\.[0-9a-f]{8}|\.new-[0-9a-f]{8}")
# A folder without a lock file is one whose owner died while creating it, or one being created
# right now: only removed once it is this old.
_UNLOCKED_GRACE_SECONDS = 60.0
# Below this much free space the disk counts as full (a converter's write failed for it).
DISK_RESERVE_BYTES = 8 * 1024 * 1024
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DISK_WORDS = ("no space left on device", "disk quota exceeded")
# multiprocessing's fork server listens on `<TMPDIR>/pymp-XXXXXXXX/listener-XXXXXXXX`, and a
# Unix socket's path has at most 107 bytes.
_SOCKET_NAME_ROOM = 33
_MAX_SOCKET_PATH = 107
# The quota's walk of a task folder may use about 1/QUOTA_DUTY of a core at most.
_QUOTA_MIN_INTERVAL = 0.25
_QUOTA_DUTY = 20


class ScratchSpace:
    """The folder this process owns under `root`, and the task folders in it."""

    def __init__(self, folder: Path, lock_fd: int) -> None:
        self.folder = folder
        self._lock_fd = lock_fd

    @classmethod
    def claim(cls, root: Path | None, service: str) -> ScratchSpace:
        """Removes what dead workers left under `root`, then creates and locks this
        process's own folder."""
        root = root or Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        for name in remove_abandoned(root):
            log.warning("removed the scratch folder of a dead worker", extra={"folder": name})
        token = secrets.token_hex(4)
        # Locked before it gets its final name, so no other worker can take it for abandoned.
        building = root / f".new-{token}"
        building.mkdir(mode=0o700)
        lock_fd = os.open(building / LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (building / "tmp").mkdir()
        folder = root / f"{service}.{os.getpid()}.{token}"
        building.rename(folder)
        return cls(folder, lock_fd)

    @property
    def tmp(self) -> Path:
        return self.folder / "tmp"

    def use_as_tmpdir(self) -> bool:
        """Makes `tmp/` this process's TMPDIR (and that of every process it starts), unless
        its path is too long for the sandbox fork server's socket in it."""
        if len(str(self.tmp)) + _SOCKET_NAME_ROOM > _MAX_SOCKET_PATH:
            log.warning("scratch path too long for TMPDIR", extra={"folder": str(self.tmp)})
            return False
        settings.export("TMPDIR", str(self.tmp))
        tempfile.tempdir = None
        return True

    def task_folder(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.folder))

    def release(self) -> None:
        """Removes the folder (a clean exit leaves nothing behind) and drops the lock."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def remove_abandoned(root: Path) -> list[str]:
    """Removes every worker folder under `root` whose lock nobody holds; returns their names."""
    removed = []
    for entry in abandoned(root):
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def abandoned(root: Path) -> list[Path]:
    """The worker folders under `root` whose lock nobody holds."""
    return [
        entry
        for entry in sorted(root.iterdir())
        if _OWNED.fullmatch(entry.name) and entry.is_dir() and _abandoned(entry)
    ]


def _abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            age = time.time() - folder.stat().st_mtime
        except FileNotFoundError:
            return False
        return age > _UNLOCKED_GRACE_SECONDS
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its owner is alive
    finally:
        os.close(fd)
    return True


def usage(folder: Path) -> int:
    """Bytes of disk the files under `folder` take (allocated blocks: sparse files count for
    what they really use)."""
    total = 0
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def disk_full(folder: Path) -> bool:
    try:
        return free_bytes(folder) < DISK_RESERVE_BYTES
    except OSError:
        return False


def is_disk_error(error: BaseException) -> bool:
    """Whether `error`, or anything in its chain, is a write that failed for lack of space."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return True
        if any(words in str(current).lower() for words in _DISK_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_error() -> MeshError:
    return RetryLaterError(
        Reason.RESOURCE_EXHAUSTED,
        "The worker ran out of scratch disk space for this file (the disk was full; the file "
        "itself may well be fine).",
    )


def quota_error(max_bytes: int) -> MeshError:
    return MeshError(
        Reason.RESOURCE_EXHAUSTED,
        f"The conversion needed more than {max_bytes // (1024 * 1024)} MiB of scratch disk "
        "space and was stopped.",
        limit_bytes=max_bytes,
    )


@contextlib.asynccontextmanager
async def quota(folder: Path, max_bytes: int | None) -> AsyncIterator[None]:
    """Runs the body while measuring `folder`; stops it with `quota_error` once the files
    under it take more than `max_bytes` (None: no limit)."""
    if not max_bytes:
        yield
        return
    body = asyncio.current_task()
    assert body is not None
    exceeded = False

    async def watch() -> None:
        nonlocal exceeded
        # The first walk after one interval: a task that ends sooner (a thumbnail) is never
        # walked, which spared it a thread hand-off and a scan of what it had only begun to
        # write (a source over the quota is refused before it is fetched).
        pause = _QUOTA_MIN_INTERVAL
        while True:
            await asyncio.sleep(pause)
            began = time.monotonic()
            used = await asyncio.to_thread(usage, folder)
            if used > max_bytes:
                exceeded = True
                body.cancel()
                return
            pause = max(_QUOTA_MIN_INTERVAL, _QUOTA_DUTY * (time.monotonic() - began))

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not exceeded:
            raise
        body.uncancel()
        raise quota_error(max_bytes) from None
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
