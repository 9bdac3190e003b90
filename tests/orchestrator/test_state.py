"""Job state transitions: derived status, duplicate and stale results, cancellation."""

from __future__ import annotations

import pytest

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import state


def record_with(files: int) -> state_pb2.JobRecord:
    record = state_pb2.JobRecord(job=jobs_pb2.Job(job_id="j", status=jobs_pb2.JOB_STATUS_PENDING))
    for index in range(files):
        record.tasks.append(state_pb2.FileTask(index=index, task_id=f"j.{index}"))
        record.job.files.append(
            jobs_pb2.FileResult(index=index, status=jobs_pb2.FILE_STATUS_PENDING)
        )
    return record


def result(index: int, kind: int, **fields: object) -> tasks_pb2.Result:
    return tasks_pb2.Result(task_id=f"j.{index}", file_index=index, kind=kind, **fields)  # type: ignore[arg-type]


def test_started_file_makes_the_job_processing() -> None:
    record = record_with(2)
    assert state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_STARTED))
    assert record.job.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert record.job.files[0].status == jobs_pb2.FILE_STATUS_PROCESSING


def test_mixed_outcome_completes_with_failed_count() -> None:
    record = record_with(2)
    state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_SUCCEEDED, output_size=10))
    state.apply_result(
        record,
        result(1, tasks_pb2.RESULT_KIND_FAILED, error_code="CORRUPT_INPUT", error_message="bad"),
    )
    job = record.job
    assert job.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert (job.completed_files, job.failed_files, job.progress) == (1, 1, 100)
    assert job.HasField("completed_at")


def test_all_failed_is_failed_with_the_reason() -> None:
    record = record_with(1)
    state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_FAILED, error_message="bad input"))
    assert record.job.status == jobs_pb2.JOB_STATUS_FAILED
    assert record.job.error_message == "bad input"


def test_duplicate_and_stale_results_change_nothing() -> None:
    record = record_with(1)
    assert state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_PROGRESS, progress=40))
    assert not state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_PROGRESS, progress=30))
    assert state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_SUCCEEDED))
    assert not state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_FAILED))
    assert record.job.files[0].status == jobs_pb2.FILE_STATUS_COMPLETED
    foreign = tasks_pb2.Result(task_id="other.0", file_index=0, kind=tasks_pb2.RESULT_KIND_FAILED)
    assert not state.apply_result(record_with(1), foreign)


def test_only_pending_jobs_can_be_cancelled() -> None:
    record = record_with(1)
    state.cancel(record)
    assert record.job.status == jobs_pb2.JOB_STATUS_CANCELLED
    assert not state.apply_result(record, result(0, tasks_pb2.RESULT_KIND_STARTED))
    busy = record_with(1)
    state.apply_result(busy, result(0, tasks_pb2.RESULT_KIND_STARTED))
    with pytest.raises(MeshError) as caught:
        state.cancel(busy)
    assert caught.value.reason is Reason.CONFLICT


def test_a_success_takes_the_workers_output_name_and_kept_original_flag() -> None:
    record = record_with(1)
    record.job.files[0].output_filename = "my.tar.gz"
    state.apply_result(
        record,
        result(0, tasks_pb2.RESULT_KIND_SUCCEEDED, output_name="inner.txt.gz", kept_original=True),
    )
    assert record.job.files[0].output_filename == "inner.txt.gz"
    assert record.job.files[0].kept_original
