"""Job records and upload records in JetStream KV, updated by compare-and-set.

Every change goes through `mutate`: read the record and its revision, apply a pure function,
write back only if the revision is unchanged, else read again. Several orchestrator replicas
can therefore apply results to the same job safely.

The store remembers the record and revision it last read or wrote for the most recent jobs
(`known_entries` of them), so a change to such a job writes without reading first: the write
is still a compare-and-set against that revision, and a conflict (another replica wrote
meanwhile) or a change that does nothing to the remembered record reads the bucket as before.

A job is created marked `undispatched` and the mark is cleared once all its tasks went out
(`mark_dispatched`). With `mark_seconds`, clearing it costs no write of its own when the job
is written again soon: the mark is held here and rides on the job's next write from this
replica (its result, for a job that takes less than that), and is written alone only when
nothing else was written by then, or when the store closes. Until it is written the record
says `undispatched`, as it does while a dispatch is under way: an orchestrator that dies
meanwhile leaves the job to the redispatch sweep, whose repeats JetStream drops
(`Nats-Msg-Id`), as after a crash between the publishes and the mark.

Workers never read job records: what they need to know, that a task is no longer wanted, is
one key per task in the `settled` bucket (`settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

from nats.js import JetStreamContext
from nats.js.errors import InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import tally

log = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 50
# Jobs whose last record and revision the store remembers (a few hundred bytes each).
KNOWN_ENTRIES = 4096


class JobExistsError(Exception):
    """A record with this key exists already (an idempotent retry of a creation)."""


class JobStore:
    def __init__(
        self,
        jobs: KeyValue,
        uploads: KeyValue,
        settled: KeyValue,
        known_entries: int = KNOWN_ENTRIES,
        mark_seconds: float = 0.0,
    ) -> None:
        self._jobs = jobs
        self._uploads = uploads
        self._settled = settled
        # key -> (serialized record, its revision), least recently used first.
        self._known: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._known_entries = known_entries
        self._mark_seconds = mark_seconds
        # key -> (tenant, job id, the timer that writes the held dispatched mark on its own).
        self._marks: dict[str, tuple[str, str, asyncio.TimerHandle]] = {}
        self._mark_writes: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls, js: JetStreamContext, known_entries: int = KNOWN_ENTRIES, mark_seconds: float = 0.0
    ) -> JobStore:
        return cls(
            await js.key_value(streams.JOBS_BUCKET),
            await js.key_value(streams.UPLOADS_BUCKET),
            await js.key_value(streams.SETTLED_BUCKET),
            known_entries,
            mark_seconds,
        )

    async def mark_dispatched(self, tenant: str, job_id: str) -> None:
        """Clears the job's `undispatched` mark: every task of it went out. Only a caller that
        has published them all may call this."""
        if self._mark_seconds <= 0:
            await self.mutate(tenant, job_id, _dispatched)
            return
        key = streams.job_key(tenant, job_id)
        if key not in self._marks:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._mark_seconds, self._mark_due, tenant, job_id)
            self._marks[key] = (tenant, job_id, timer)

    def marks_held(self) -> int:
        """Dispatched marks held, not written yet."""
        return len(self._marks)

    def _mark_due(self, tenant: str, job_id: str) -> None:
        write = asyncio.create_task(self._write_mark(tenant, job_id))
        self._mark_writes.add(write)
        write.add_done_callback(self._mark_writes.discard)

    async def _write_mark(self, tenant: str, job_id: str) -> None:
        key = streams.job_key(tenant, job_id)
        try:
            await self.mutate(tenant, job_id, _dispatched)
        except MeshError as error:
            # Gone (deleted or expired), or NATS unreachable: the sweep redispatches what is
            # still marked, and JetStream drops the repeats.
            if error.reason is not Reason.NOT_FOUND:
                log.warning(
                    "dispatched mark not written", extra={"job": job_id, "reason": error.reason}
                )
        except Exception:
            log.exception("dispatched mark not written", extra={"job": job_id})
        finally:
            self._drop_mark(key)

    def _drop_mark(self, key: str) -> None:
        held = self._marks.pop(key, None)
        if held is not None:
            held[2].cancel()

    async def close(self) -> None:
        """Writes the dispatched marks still held (the orchestrator is stopping)."""
        for tenant, job_id, timer in list(self._marks.values()):
            timer.cancel()
            self._mark_due(tenant, job_id)
        if self._mark_writes:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._mark_writes, return_exceptions=True)

    def _remember(self, key: str, data: bytes, revision: int) -> None:
        if self._known_entries <= 0:
            return
        known = self._known.get(key)
        if known is not None and known[1] > revision:
            return  # an older read finishing after a newer write
        self._known[key] = (data, revision)
        self._known.move_to_end(key)
        while len(self._known) > self._known_entries:
            self._known.popitem(last=False)

    def remembered(self, tenant: str, job_id: str) -> state_pb2.JobRecord | None:
        """The record last read or written here, if remembered: possibly stale, so only for
        what cannot have changed since (a completed file's output)."""
        known = self._known.get(streams.job_key(tenant, job_id))
        return state_pb2.JobRecord.FromString(known[0]) if known is not None else None

    async def create(self, record: state_pb2.JobRecord) -> None:
        key = streams.job_key(record.job.tenant, record.job.job_id)
        data = record.SerializeToString()
        try:
            revision = await self._jobs.create(key, data)
        except KeyWrongLastSequenceError as exc:
            raise JobExistsError(key) from exc
        self._remember(key, data, revision)
        tally.created(record)

    async def get(self, tenant: str, job_id: str) -> tuple[state_pb2.JobRecord, int]:
        key = streams.job_key(tenant, job_id)
        try:
            entry = await self._jobs.get(key)
        except (KeyNotFoundError, InvalidKeyError, ValueError) as exc:
            self._known.pop(key, None)
            raise MeshError(Reason.NOT_FOUND, "No job with this id.") from exc
        data, revision = entry.value or b"", entry.revision or 0
        self._remember(key, data, revision)
        return state_pb2.JobRecord.FromString(data), revision

    async def mutate(
        self, tenant: str, job_id: str, change: Callable[[state_pb2.JobRecord], bool]
    ) -> tuple[state_pb2.JobRecord, bool]:
        """Applies `change` with compare-and-set; returns the record and whether it changed.

        A remembered record is tried first; it may be stale, so a conflict, or a change that
        leaves it as it is, is decided again on the record read from the bucket."""
        key = streams.job_key(tenant, job_id)
        known = self._known.get(key)
        for _ in range(MAX_CAS_ATTEMPTS):
            if known is not None:
                record, revision = state_pb2.JobRecord.FromString(known[0]), known[1]
            else:
                record, revision = await self.get(tenant, job_id)
            before = tally.snapshot(record)
            changed = change(record)
            if key in self._marks and record.undispatched:
                record.undispatched = False  # the held mark rides on this write
                changed = True
            if not changed:
                if known is not None:
                    known = None
                    continue
                return record, False
            known = None
            data = record.SerializeToString()
            try:
                written = await self._jobs.update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                if key in self._known and self._known[key][1] == revision:
                    del self._known[key]  # stale (a newer write of ours may have replaced it)
                await asyncio.sleep(0)
                continue
            self._remember(key, data, written)
            if not record.undispatched:
                self._drop_mark(key)
            tally.changed(before, record)
            return record, True
        raise MeshError(Reason.UNAVAILABLE, "The job is too busy to update; retry.")

    async def fetch_jobs(self, tenant: str, job_ids: list[str]) -> list[jobs_pb2.Job]:
        """The jobs with these ids, in order, skipping any that expired meanwhile."""
        records = await asyncio.gather(
            *(self.get(tenant, job_id) for job_id in job_ids), return_exceptions=True
        )
        jobs = []
        for found in records:
            if isinstance(found, MeshError) and found.reason is Reason.NOT_FOUND:
                continue
            if isinstance(found, BaseException):
                raise found
            jobs.append(found[0].job)
        return jobs

    async def settle(self, task_ids: Iterable[str]) -> None:
        """Tells workers these tasks are no longer wanted (a redelivery or a job cancelled)."""
        for task_id in task_ids:
            await self._settled.put(streams.settled_key(task_id), b"")

    @property
    def jobs_bucket(self) -> KeyValue:
        return self._jobs

    async def put_upload(self, blob_id: str, record: state_pb2.UploadRecord) -> None:
        await self._uploads.put(streams.upload_key(blob_id), record.SerializeToString())

    async def get_upload(self, tenant: str, blob_id: str) -> state_pb2.UploadRecord:
        try:
            entry = await self._uploads.get(streams.upload_key(blob_id))
        except (KeyNotFoundError, InvalidKeyError, ValueError) as exc:
            raise MeshError(Reason.NOT_FOUND, "No uploaded file with this id.") from exc
        record = state_pb2.UploadRecord.FromString(entry.value or b"")
        if record.tenant != tenant:
            raise MeshError(Reason.NOT_FOUND, "No uploaded file with this id.")
        return record

    async def delete_upload(self, blob_id: str) -> None:
        await self._uploads.purge(streams.upload_key(blob_id))


def _dispatched(record: state_pb2.JobRecord) -> bool:
    changed = record.undispatched
    record.undispatched = False
    return changed
