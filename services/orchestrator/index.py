"""A per-tenant index of jobs, newest first, kept current by the jobs bucket's own update
stream (a KV watch over every key), so that listing a page and counting a tenant's active jobs
never scan the bucket.

Each replica builds its index once at start (one pass over the bucket) and then applies every
update as it happens; a list request only reads the page it returns. Entries whose record has
aged out of the bucket (TTL) are dropped when the retention says they must be gone.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from dataclasses import dataclass, field

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2

log = logging.getLogger(__name__)

ACTIVE = frozenset({jobs_pb2.JOB_STATUS_PENDING, jobs_pb2.JOB_STATUS_PROCESSING})

# A cancelled job reads as failed (cancelled: true) in the REST contract, so a filter on failed
# lists it too; a filter on cancelled lists only cancelled jobs.
_FILTERS: dict[int, frozenset[int]] = {
    jobs_pb2.JOB_STATUS_FAILED: frozenset(
        {jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELLED}
    )
}


@dataclass
class _Entry:
    created_ns: int
    job_id: str
    status: int
    updated_ns: int
    undispatched: bool = False


@dataclass
class _Tenant:
    # Sorted ascending by (created_ns, job_id); pages are read from the end.
    order: list[tuple[int, str]] = field(default_factory=list)
    entries: dict[str, _Entry] = field(default_factory=dict)


class JobIndex:
    def __init__(self, jobs: KeyValue, retention_seconds: float) -> None:
        self._jobs = jobs
        self._retention_ns = int(retention_seconds * 1e9)
        self._tenants: dict[str, _Tenant] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts following the bucket and waits until the initial pass is done."""
        self._task = asyncio.create_task(self._follow())
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def page(self, tenant: str, limit: int, offset: int, status: int) -> tuple[list[str], int]:
        """Job ids of one page, newest first, and the total matching the filter."""
        self._expire(tenant)
        bucket = self._tenants.get(tenant)
        if bucket is None:
            return [], 0
        if status == jobs_pb2.JOB_STATUS_UNSPECIFIED:
            total = len(bucket.order)
            end = max(total - offset, 0)
            start = max(end - limit, 0)
            return [job_id for _, job_id in reversed(bucket.order[start:end])], total
        wanted = _FILTERS.get(status, frozenset({status}))
        matching = [
            job_id
            for _, job_id in reversed(bucket.order)
            if bucket.entries[job_id].status in wanted
        ]
        return matching[offset : offset + limit], len(matching)

    def undispatched(self, created_before_ns: int) -> list[tuple[str, str]]:
        """(tenant, job id) of every unfinished job created before then whose dispatch was
        never recorded as complete."""
        return [
            (tenant, entry.job_id)
            for tenant, bucket in self._tenants.items()
            for entry in bucket.entries.values()
            if entry.undispatched
            and entry.status in ACTIVE
            and entry.created_ns < created_before_ns
        ]

    def active_jobs(self, tenant: str) -> int:
        bucket = self._tenants.get(tenant)
        if bucket is None:
            return 0
        return sum(1 for entry in bucket.entries.values() if entry.status in ACTIVE)

    def forget(self, tenant: str, job_id: str) -> None:
        bucket = self._tenants.get(tenant)
        if bucket is None or job_id not in bucket.entries:
            return
        entry = bucket.entries.pop(job_id)
        position = bisect.bisect_left(bucket.order, (entry.created_ns, job_id))
        if position < len(bucket.order) and bucket.order[position] == (entry.created_ns, job_id):
            del bucket.order[position]

    def apply(self, record: state_pb2.JobRecord) -> None:
        job = record.job
        bucket = self._tenants.setdefault(job.tenant, _Tenant())
        updated = job.updated_at.ToNanoseconds()
        known = bucket.entries.get(job.job_id)
        if known is not None:
            known.status = job.status
            known.updated_ns = updated
            known.undispatched = record.undispatched
            return
        created = job.created_at.ToNanoseconds()
        bucket.entries[job.job_id] = _Entry(
            created, job.job_id, job.status, updated, record.undispatched
        )
        bisect.insort(bucket.order, (created, job.job_id))

    def _expire(self, tenant: str) -> None:
        bucket = self._tenants.get(tenant)
        if bucket is None:
            return
        cutoff = time.time_ns() - self._retention_ns
        for job_id in [j for j, e in bucket.entries.items() if e.updated_ns < cutoff]:
            self.forget(tenant, job_id)

    async def _follow(self) -> None:
        while True:
            try:
                watcher = await self._jobs.watch(">")
                try:
                    async for entry in watcher:
                        if entry is None:
                            self._ready.set()
                            continue
                        tenant, _, job_id = entry.key.partition(".")
                        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                            self.forget(tenant, job_id)
                            continue
                        self.apply(state_pb2.JobRecord.FromString(entry.value))
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A lost watch is rebuilt from scratch: the bucket is the source of truth.
                log.warning("job index watch failed, rebuilding: %s", exc)
                self._tenants.clear()
                await asyncio.sleep(1.0)
