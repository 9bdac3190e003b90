"""A job whose orchestrator died mid-dispatch: every replica finds it (at start and then
periodically) and dispatches its files that never started; a retry with the same key does so
at once. With a real nats-server and the real JobService."""

from __future__ import annotations

import contextlib

from nats.js.errors import NotFoundError

from mesh.bus import streams
from mesh.jobs.v1 import jobs_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import specs, state
from services.orchestrator.jobs import job_id_for
from services.orchestrator.redispatch import redispatch_due
from services.orchestrator.server import JobService
from services.orchestrator.settings import Settings
from tests.orchestrator.conftest import Orchestrator, settle, upload

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


async def queued_tasks(orchestrator: Orchestrator, job_id: str) -> list[str]:
    """Ids of the tasks of `job_id` waiting in the task stream (read by sequence, so that
    nothing is consumed)."""
    js = orchestrator.js
    state_now = (await js.stream_info(streams.TASKS_STREAM)).state
    found: list[str] = []
    for sequence in range(state_now.first_seq, state_now.last_seq + 1):
        with contextlib.suppress(NotFoundError):
            task = tasks_pb2.Task.FromString(
                (await js.get_msg(streams.TASKS_STREAM, sequence)).data or b""
            )
            if task.job_id == job_id:
                found.append(task.task_id)
    return sorted(found)


def request(tenant: str, key: str, blobs: list[str]) -> jobs_pb2.CreateJobRequest:
    return jobs_pb2.CreateJobRequest(
        tenant=tenant,
        request_id=key,
        files=[
            jobs_pb2.FileSpec(
                blob_id=blob, filename=f"{n}.png", options=jobs_pb2.FileOptions(format="jpg")
            )
            for n, blob in enumerate(blobs)
        ],
    )


async def half_dispatched(orchestrator: Orchestrator, tenant: str, files: int) -> str:
    """A job as an orchestrator killed mid-dispatch leaves it: its record written (the job the
    service builds for the request with key `<tenant>-key`), no task published, and its first
    file started (its task went out before the crash)."""
    stub = orchestrator.stub
    blobs = [await upload(stub, tenant, PNG) for _ in range(files)]
    model = await stub.CreateJob(request(tenant, "model", blobs))
    record, _ = await orchestrator.store.get(tenant, model.job.job_id)
    job_id = job_id_for(tenant, f"{tenant}-key")
    record.job.job_id = job_id
    record.request_id = f"{tenant}-key"
    for task in record.tasks:
        task.task_id = specs.file_task_id(job_id, task.index)
        task.output_blob = f"out/{job_id}/{task.index}"
    record.undispatched = True
    record.job.files[0].status = jobs_pb2.FILE_STATUS_PROCESSING
    state.derive(record)
    await orchestrator.store.create(record)
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)
    return job_id


async def test_an_interrupted_dispatch_is_completed_once_the_job_is_old_enough(
    orchestrator: Orchestrator,
) -> None:
    job_id = await half_dispatched(orchestrator, "halfway", 3)
    await settle(lambda: bool(orchestrator.index.undispatched(2**63)))
    service = JobService(orchestrator.js, orchestrator.store, orchestrator.index, Settings())
    # Too young: its creator may still be dispatching it.
    assert await redispatch_due(service.creator, orchestrator.store, orchestrator.index, 3600) == 0
    assert await queued_tasks(orchestrator, job_id) == []
    assert await redispatch_due(service.creator, orchestrator.store, orchestrator.index, 0) == 1
    # The file that had started is not sent again; the other two are.
    assert await queued_tasks(orchestrator, job_id) == [f"{job_id}.1", f"{job_id}.2"]
    record, _ = await orchestrator.store.get("halfway", job_id)
    assert not record.undispatched
    await settle(lambda: not orchestrator.index.undispatched(2**63))
    assert await redispatch_due(service.creator, orchestrator.store, orchestrator.index, 0) == 0
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)


async def test_a_retry_with_the_same_key_completes_an_interrupted_dispatch(
    orchestrator: Orchestrator,
) -> None:
    job_id = await half_dispatched(orchestrator, "retrying", 2)
    blobs = [await upload(orchestrator.stub, "retrying", PNG) for _ in range(2)]
    retried = await orchestrator.stub.CreateJob(request("retrying", "retrying-key", blobs))
    assert retried.replayed and retried.job.job_id == job_id
    assert retried.job.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert await queued_tasks(orchestrator, job_id) == [f"{job_id}.1"]
    record, _ = await orchestrator.store.get("retrying", job_id)
    assert not record.undispatched
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)


async def test_a_job_is_marked_dispatched_once_its_tasks_went_out(
    orchestrator: Orchestrator,
) -> None:
    blob = await upload(orchestrator.stub, "marked", PNG)
    created = await orchestrator.stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="marked",
            files=[jobs_pb2.FileSpec(blob_id=blob, options=jobs_pb2.FileOptions(format="jpg"))],
        )
    )
    record, _ = await orchestrator.store.get("marked", created.job.job_id)
    assert not record.undispatched
    assert await queued_tasks(orchestrator, created.job.job_id) == [f"{created.job.job_id}.0"]
    await orchestrator.js.purge_stream(streams.TASKS_STREAM)
