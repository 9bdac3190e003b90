"""Shared fixtures for the archive tests: the corpus, a canary directory around each job
directory (to prove nothing is written outside it), and the independent checking tools."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CORPUS = Path("/work/shared/corpus")


def corpus(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus file {relative} is missing")
    return path


def tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"none of {names} is installed")


def snapshot(root: Path) -> set[str]:
    """Every path under root (links included, never followed)."""
    found = set()
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def links_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_symlink()]


def disk_bytes(root: Path) -> int:
    return sum(path.lstat().st_blocks * 512 for path in root.rglob("*"))


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A parent directory holding the job directory `canary/job`; the test asserts that the
    parent gained nothing but `job` and its contents."""
    parent = tmp_path / "canary"
    job = parent / "job"
    job.mkdir(parents=True)
    (parent / "sentinel.txt").write_text("untouched")
    before = snapshot(parent)
    yield job
    after = snapshot(parent)
    outside = {p for p in after - before if not p.startswith("job")}
    assert outside == set(), f"written outside the job dir: {outside}"
    assert (parent / "sentinel.txt").read_text() == "untouched"
