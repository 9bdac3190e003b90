"""Job records and upload records in JetStream KV, updated by compare-and-set.

Every change goes through `mutate`: read the record and its revision, apply a pure function,
write back only if the revision is unchanged, else read again. Several orchestrator replicas
can therefore apply results to the same job safely.

Workers never read job records: what they need to know, that a task is no longer wanted, is
one key per task in the `settled` bucket (`settle`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from nats.js import JetStreamContext
from nats.js.errors import InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import tally

MAX_CAS_ATTEMPTS = 50
# A job watch is an ephemeral ordered consumer on the jobs bucket's stream; stopping it only
# unsubscribes, and the server removes the consumer once it has had no subscriber this long.
# nats-py's default is 5 min: at a few WatchJob calls a second that reached JetStream's limit of
# 1,000 consumers per stream, after which every new watch, and so every sync request, failed.
WATCH_LINGER_SECONDS = 5.0


class JobExistsError(Exception):
    """A record with this key exists already (an idempotent retry of a creation)."""


class JobStore:
    def __init__(self, jobs: KeyValue, uploads: KeyValue, settled: KeyValue) -> None:
        self._jobs = jobs
        self._uploads = uploads
        self._settled = settled

    @classmethod
    async def open(cls, js: JetStreamContext) -> JobStore:
        return cls(
            await js.key_value(streams.JOBS_BUCKET),
            await js.key_value(streams.UPLOADS_BUCKET),
            await js.key_value(streams.SETTLED_BUCKET),
        )

    async def create(self, record: state_pb2.JobRecord) -> None:
        key = streams.job_key(record.job.tenant, record.job.job_id)
        try:
            await self._jobs.create(key, record.SerializeToString())
        except KeyWrongLastSequenceError as exc:
            raise JobExistsError(key) from exc
        tally.created(record)

    async def get(self, tenant: str, job_id: str) -> tuple[state_pb2.JobRecord, int]:
        try:
            entry = await self._jobs.get(streams.job_key(tenant, job_id))
        except (KeyNotFoundError, InvalidKeyError, ValueError) as exc:
            raise MeshError(Reason.NOT_FOUND, "No job with this id.") from exc
        return state_pb2.JobRecord.FromString(entry.value or b""), entry.revision or 0

    async def mutate(
        self, tenant: str, job_id: str, change: Callable[[state_pb2.JobRecord], bool]
    ) -> tuple[state_pb2.JobRecord, bool]:
        """Applies `change` with compare-and-set; returns the record and whether it changed."""
        for _ in range(MAX_CAS_ATTEMPTS):
            record, revision = await self.get(tenant, job_id)
            before = tally.snapshot(record)
            if not change(record):
                return record, False
            try:
                await self._jobs.update(
                    streams.job_key(tenant, job_id), record.SerializeToString(), last=revision
                )
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0)
                continue
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

    async def watch(self, tenant: str, job_id: str) -> AsyncIterator[state_pb2.JobRecord]:
        """Yields the record now and after every change, from the KV's own update stream."""
        watcher = await self._jobs.watch(
            streams.job_key(tenant, job_id), inactive_threshold=WATCH_LINGER_SECONDS
        )
        try:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                yield state_pb2.JobRecord.FromString(entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

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
