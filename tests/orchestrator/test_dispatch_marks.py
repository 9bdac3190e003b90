"""A job's dispatched mark held to ride on its next write (`DISPATCH_MARK_SECONDS`): one KV
revision fewer for a job that finishes within the hold, written alone when nothing else comes,
and written when the store closes. With a real nats-server and the real JobService."""

from __future__ import annotations

import asyncio
import time

import pytest

from mesh.bus import streams
from mesh.jobs.v1 import jobs_pb2
from mesh.settings import SettingsError
from mesh.state.v1 import state_pb2
from services.orchestrator.server import JobService
from services.orchestrator.settings import Settings
from services.orchestrator.store import JobStore
from tests.orchestrator.conftest import Orchestrator, upload

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JOBS_STREAM = f"KV_{streams.JOBS_BUCKET}"


async def last_sequence(orchestrator: Orchestrator) -> int:
    return (await orchestrator.js.stream_info(JOBS_STREAM)).state.last_seq


async def create(orchestrator: Orchestrator, store: JobStore, tenant: str) -> str:
    service = JobService(orchestrator.js, store, orchestrator.index, Settings())
    blob = await upload(orchestrator.stub, tenant, PNG)
    created = await service.creator.create(
        jobs_pb2.CreateJobRequest(
            tenant=tenant,
            files=[jobs_pb2.FileSpec(blob_id=blob, options=jobs_pb2.FileOptions(format="jpg"))],
        )
    )
    return created.job.job_id


def started(record: state_pb2.JobRecord) -> bool:
    record.job.files[0].status = jobs_pb2.FILE_STATUS_PROCESSING
    return True


async def test_the_mark_rides_on_the_jobs_next_write(orchestrator: Orchestrator) -> None:
    store = await JobStore.open(orchestrator.js, mark_seconds=3600)
    before = await last_sequence(orchestrator)
    job_id = await create(orchestrator, store, "riding")
    record, _ = await store.get("riding", job_id)
    assert record.undispatched and store.marks_held() == 1
    record, changed = await store.mutate("riding", job_id, started)
    assert changed and not record.undispatched
    assert store.marks_held() == 0
    stored, _ = await orchestrator.store.get("riding", job_id)
    assert not stored.undispatched
    assert stored.job.files[0].status == jobs_pb2.FILE_STATUS_PROCESSING
    # The creation and the change: no revision of the mark's own.
    assert await last_sequence(orchestrator) - before == 2
    await store.close()
    assert await last_sequence(orchestrator) - before == 2
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)


async def test_a_mark_nothing_rides_on_is_written_alone(orchestrator: Orchestrator) -> None:
    store = await JobStore.open(orchestrator.js, mark_seconds=0.2)
    before = await last_sequence(orchestrator)
    job_id = await create(orchestrator, store, "alone")
    deadline = time.monotonic() + 30
    while (await orchestrator.store.get("alone", job_id))[0].undispatched:
        assert time.monotonic() < deadline, "the held mark was never written"
        await asyncio.sleep(0.02)
    assert store.marks_held() == 0
    assert await last_sequence(orchestrator) - before == 2
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)


async def test_closing_the_store_writes_the_marks_it_holds(orchestrator: Orchestrator) -> None:
    store = await JobStore.open(orchestrator.js, mark_seconds=3600)
    job_ids = [await create(orchestrator, store, "closing") for _ in range(2)]
    assert store.marks_held() == 2
    await store.close()
    assert store.marks_held() == 0
    for job_id in job_ids:
        record, _ = await orchestrator.store.get("closing", job_id)
        assert not record.undispatched
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)


KEYED = {"LINK_SIGNING_KEYS": "k" * 32}


def test_the_hold_stays_inside_the_redispatch_wait() -> None:
    assert Settings.from_env(KEYED).dispatch_mark_seconds == 2.0
    shorter = {**KEYED, "REDISPATCH_SECONDS": "2"}
    assert Settings.from_env(shorter).dispatch_mark_seconds == 1.0
    assert Settings.from_env({**KEYED, "DISPATCH_MARK_SECONDS": "0"}).dispatch_mark_seconds == 0
    with pytest.raises(SettingsError, match="DISPATCH_MARK_SECONDS"):
        Settings.from_env({**KEYED, "DISPATCH_MARK_SECONDS": "8"})
