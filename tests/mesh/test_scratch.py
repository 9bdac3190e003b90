"""Scratch space: a folder per worker process, what a dead one left removed by the next one to
start (a live one's kept), a full disk recognised whatever wraps the error."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

from mesh import scratch
from mesh.errors import MeshError, Reason

HOLDER = """
import sys, time
from pathlib import Path
from mesh.scratch import ScratchSpace
space = ScratchSpace.claim(Path(sys.argv[1]), sys.argv[2])
(space.task_folder("image") / "users-photo.jpg").write_bytes(b"private")
print(space.folder, flush=True)
time.sleep(600)
"""


def hold(root: Path, service: str) -> tuple[subprocess.Popen[str], Path]:
    """A process owning a scratch folder with a task's file in it, until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), service], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_dead_workers_folder_is_removed_by_the_next_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    dead, dead_folder = hold(tmp_path, "media")
    alive, alive_folder = hold(tmp_path, "image")
    stranger = tmp_path / "not-ours"
    stranger.mkdir()
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        assert (dead_folder / "tmp").is_dir()
        space = scratch.ScratchSpace.claim(tmp_path, "media")
        try:
            assert not dead_folder.exists()
            assert alive_folder.is_dir() and stranger.is_dir()
            assert space.folder.name.startswith(f"media.{os.getpid()}.")
        finally:
            space.release()
        assert not space.folder.exists()
    finally:
        alive.kill()
        alive.wait(10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive_folder.name, "not-ours"])


def test_a_write_to_a_full_disk_is_recognised_through_the_decoders_wrapping() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise MeshError(Reason.CORRUPT_INPUT, "The media could not be decoded.") from cause
    except MeshError as wrapped:
        assert scratch.is_disk_error(wrapped)
    assert scratch.is_disk_error(
        RuntimeError("VipsForeignSave: write failed: No space left on device")
    )
    assert not scratch.is_disk_error(MeshError(Reason.CORRUPT_INPUT, "Bad bytes."))
    error = scratch.disk_full_error()
    assert error.reason is Reason.RESOURCE_EXHAUSTED and error.retryable
    assert not scratch.quota_error(1 << 20).retryable
