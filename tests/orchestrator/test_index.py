"""The job index: pages newest first without scanning, status filters, expiry, 429 on load."""

from __future__ import annotations

import grpc
import pytest

from mesh.errors import Reason, from_grpc_error
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import state
from tests.orchestrator.conftest import Orchestrator, settle, upload

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def record(
    tenant: str, job_id: str, created_ns: int, status: jobs_pb2.JobStatus.ValueType
) -> state_pb2.JobRecord:
    job = jobs_pb2.Job(job_id=job_id, tenant=tenant, status=status)
    job.created_at.FromNanoseconds(created_ns)
    job.updated_at.CopyFrom(state.now())
    return state_pb2.JobRecord(job=job)


async def test_pages_are_newest_first_and_filtered(orchestrator: Orchestrator) -> None:
    base = state.now().ToNanoseconds()
    for n in range(25):
        status = jobs_pb2.JOB_STATUS_COMPLETED if n % 2 else jobs_pb2.JOB_STATUS_FAILED
        await orchestrator.store.create(record("paging", f"job-{n:02d}", base + n, status))
    await settle(lambda: orchestrator.index.page("paging", 1, 0, 0)[1] == 25)
    first = await orchestrator.stub.ListJobs(jobs_pb2.ListJobsRequest(tenant="paging", limit=10))
    assert [j.job_id for j in first.jobs] == [f"job-{n:02d}" for n in range(24, 14, -1)]
    assert first.total == 25
    last = await orchestrator.stub.ListJobs(
        jobs_pb2.ListJobsRequest(tenant="paging", limit=10, offset=20)
    )
    assert [j.job_id for j in last.jobs] == [f"job-{n:02d}" for n in range(4, -1, -1)]
    failed = await orchestrator.stub.ListJobs(
        jobs_pb2.ListJobsRequest(tenant="paging", limit=100, status=jobs_pb2.JOB_STATUS_FAILED)
    )
    assert failed.total == 13
    assert all(j.status == jobs_pb2.JOB_STATUS_FAILED for j in failed.jobs)
    other = await orchestrator.stub.ListJobs(jobs_pb2.ListJobsRequest(tenant="nobody"))
    assert (list(other.jobs), other.total) == ([], 0)


async def test_failed_lists_cancelled_jobs_too_and_cancelled_only_those(
    orchestrator: Orchestrator,
) -> None:
    base = state.now().ToNanoseconds()
    statuses = {
        "done": jobs_pb2.JOB_STATUS_COMPLETED,
        "broke": jobs_pb2.JOB_STATUS_FAILED,
        "stopped": jobs_pb2.JOB_STATUS_CANCELLED,
    }
    for n, (job_id, status) in enumerate(statuses.items()):
        await orchestrator.store.create(record("mixed", job_id, base + n, status))
    await settle(lambda: orchestrator.index.page("mixed", 10, 0, 0)[1] == 3)

    async def listed(status: jobs_pb2.JobStatus.ValueType) -> list[str]:
        request = jobs_pb2.ListJobsRequest(tenant="mixed", limit=10, status=status)
        return [j.job_id for j in (await orchestrator.stub.ListJobs(request)).jobs]

    assert await listed(jobs_pb2.JOB_STATUS_FAILED) == ["stopped", "broke"]
    assert await listed(jobs_pb2.JOB_STATUS_CANCELLED) == ["stopped"]
    assert await listed(jobs_pb2.JOB_STATUS_COMPLETED) == ["done"]


async def test_status_changes_reach_the_index(orchestrator: Orchestrator) -> None:
    base = state.now().ToNanoseconds()
    await orchestrator.store.create(record("moving", "a", base, jobs_pb2.JOB_STATUS_PENDING))
    await settle(lambda: orchestrator.index.active_jobs("moving") == 1)

    def finish(r: state_pb2.JobRecord) -> bool:
        r.job.status = jobs_pb2.JOB_STATUS_COMPLETED
        return True

    await orchestrator.store.mutate("moving", "a", finish)
    await settle(lambda: orchestrator.index.active_jobs("moving") == 0)
    page, total = orchestrator.index.page("moving", 10, 0, jobs_pb2.JOB_STATUS_COMPLETED)
    assert (page, total) == (["a"], 1)


async def test_deleted_jobs_leave_the_index(orchestrator: Orchestrator) -> None:
    base = state.now().ToNanoseconds()
    await orchestrator.store.create(record("gone", "x", base, jobs_pb2.JOB_STATUS_COMPLETED))
    await settle(lambda: orchestrator.index.page("gone", 10, 0, 0) == (["x"], 1))
    await orchestrator.store.jobs_bucket.purge("gone.x")
    await settle(lambda: orchestrator.index.page("gone", 10, 0, 0) == ([], 0))


async def test_too_many_unfinished_jobs_is_429_and_retries_still_answer(
    orchestrator: Orchestrator,
) -> None:
    stub = orchestrator.stub
    created = []
    for n in range(3):
        blob = await upload(stub, "busy", PNG)
        response = await stub.CreateJob(
            jobs_pb2.CreateJobRequest(
                tenant="busy",
                request_id=f"req-{n}",
                files=[jobs_pb2.FileSpec(blob_id=blob, options=jobs_pb2.FileOptions(format="jpg"))],
            )
        )
        created.append(response.job.job_id)
    blob = await upload(stub, "busy", PNG)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateJob(
            jobs_pb2.CreateJobRequest(
                tenant="busy",
                files=[jobs_pb2.FileSpec(blob_id=blob, options=jobs_pb2.FileOptions(format="jpg"))],
            )
        )
    error = from_grpc_error(caught.value)
    assert error.reason is Reason.RATE_LIMITED
    assert error.reason.http_status == 429 and error.reason.retryable
    blob = await upload(stub, "busy", PNG)
    retry = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="busy",
            request_id="req-0",
            files=[jobs_pb2.FileSpec(blob_id=blob, options=jobs_pb2.FileOptions(format="jpg"))],
        )
    )
    assert retry.job.job_id == created[0]


async def test_too_many_files_is_413(orchestrator: Orchestrator) -> None:
    blobs = [await upload(orchestrator.stub, "wide", PNG) for _ in range(5)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await orchestrator.stub.CreateJob(
            jobs_pb2.CreateJobRequest(
                tenant="wide",
                files=[
                    jobs_pb2.FileSpec(blob_id=b, options=jobs_pb2.FileOptions(format="jpg"))
                    for b in blobs
                ],
            )
        )
    assert from_grpc_error(caught.value).reason is Reason.TOO_LARGE
