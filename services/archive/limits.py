"""Archive limits and the budget that enforces them while bytes stream through."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import MeshError, Reason

# Tiny archives of highly compressible text legitimately exceed 200:1 (a 30-byte gzip of a
# few KiB of spaces); the ratio cap only guards against bombs, which need volume to hurt.
RATIO_GRACE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 100_000
    max_total_bytes: int = 10 * 1024**3  # counted on real bytes written, not headers
    max_entry_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0  # total uncompressed / compressed input size
    max_depth: int = 2  # nesting depth for archives inside archives (for future use)
    max_name_bytes: int = 1024


def limit_exceeded(limit: str, allowed: float, message: str, **detail: object) -> MeshError:
    return MeshError(Reason.LIMIT_EXCEEDED, message, limit=limit, allowed=allowed, **detail)


class Budget:
    """Counts entries and real uncompressed bytes for one archive; raises before a limit breaks.

    `charge` is called before a chunk is written, so what lands on disk never passes the caps.
    """

    def __init__(self, limits: ArchiveLimits, input_bytes: int) -> None:
        self.limits = limits
        self.input_bytes = max(input_bytes, 1)
        self.entries = 0
        self.total_bytes = 0
        self._ratio_cap = max(limits.max_ratio * self.input_bytes, RATIO_GRACE_BYTES)

    def admit_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise limit_exceeded(
                "max_entries",
                self.limits.max_entries,
                f"The archive has more than {self.limits.max_entries} entries.",
            )

    def check_declared(self, entry_bytes: int | None) -> None:
        """Early rejection from a header's declared size; real bytes are still counted."""
        if entry_bytes is not None and entry_bytes > self.limits.max_entry_bytes:
            raise self._entry_too_big()

    def charge(self, entry_bytes_so_far: int, chunk: int) -> None:
        if entry_bytes_so_far + chunk > self.limits.max_entry_bytes:
            raise self._entry_too_big()
        self.check_total(self.total_bytes + chunk)
        self.total_bytes += chunk

    def check_total(self, total: int) -> None:
        """Raises if `total` uncompressed bytes (real, or declared by headers) break a cap."""
        if total > self.limits.max_total_bytes:
            raise limit_exceeded(
                "max_total_bytes",
                self.limits.max_total_bytes,
                f"The archive unpacks to more than {self.limits.max_total_bytes} bytes.",
            )
        if total > self._ratio_cap:
            raise limit_exceeded(
                "max_ratio",
                self.limits.max_ratio,
                f"The archive expands more than {self.limits.max_ratio:g} times its size; "
                "it looks like a decompression bomb.",
                input_bytes=self.input_bytes,
            )

    def _entry_too_big(self) -> MeshError:
        return limit_exceeded(
            "max_entry_bytes",
            self.limits.max_entry_bytes,
            f"An archive entry is larger than {self.limits.max_entry_bytes} bytes.",
        )
