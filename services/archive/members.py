"""What readers yield (Member: one archive entry with a lazy byte stream) and what extraction
reports (Entry: one entry written to disk, or skipped with a reason)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    OTHER = "other"  # devices, fifos, sockets, sparse or unknown types


@dataclass(frozen=True)
class Member:
    """One entry as the archive declares it. `chunks` must be consumed before the next member
    is requested (tar and libarchive readers are strictly sequential)."""

    name: str
    kind: Kind
    size: int | None = None  # declared, may lie; real bytes are counted while copying
    mtime: float | None = None
    mode: int | None = None  # permission bits only
    chunks: Callable[[], Iterator[bytes]] = lambda: iter(())


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    path: Path | None
    skipped_reason: str | None = None


SKIP_REASONS = {
    Kind.SYMLINK: "symbolic link not extracted",
    Kind.HARDLINK: "hard link not extracted",
    Kind.OTHER: "special file (device, fifo or socket) not extracted",
}
