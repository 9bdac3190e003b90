"""Job records and upload records in JetStream KV, updated by compare-and-set.

Every change goes through `mutate`: read the record and its revision, apply a pure function,
write back only if the revision is unchanged, else read again. Several orchestrator replicas
can therefore apply results to the same job safely.

The store remembers the record and revision it last read or wrote for the most recent jobs
(`known_entries` of them), so a change to such a job writes without reading first: the write
is still a compare-and-set against that revision, and a conflict (another replica wrote
meanwhile) or a change that does nothing to the remembered record reads the bucket as before.

Workers never read job records: what they need to know, that a task is no longer wanted, is
one key per task in the `settled` bucket (`settle`).
"""

from __future__ import annotations

import asyncio
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
    ) -> None:
        self._jobs = jobs
        self._uploads = uploads
        self._settled = settled
        # key -> (serialized record, its revision), least recently used first.
        self._known: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._known_entries = known_entries

    @classmethod
    async def open(cls, js: JetStreamContext, known_entries: int = KNOWN_ENTRIES) -> JobStore:
        return cls(
            await js.key_value(streams.JOBS_BUCKET),
            await js.key_value(streams.UPLOADS_BUCKET),
            await js.key_value(streams.SETTLED_BUCKET),
            known_entries,
        )

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
            if not change(record):
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
