"""Job state transitions, as pure functions over the `JobRecord` kept in KV.

The job's status, progress and counters are always derived from its files here, in one place,
so that every replica applying results in any order reaches the same record.
"""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2

TERMINAL_JOB = frozenset(
    {jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELLED}
)
TERMINAL_FILE = frozenset(
    {jobs_pb2.FILE_STATUS_COMPLETED, jobs_pb2.FILE_STATUS_FAILED, jobs_pb2.FILE_STATUS_CANCELLED}
)


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def is_terminal(job: jobs_pb2.Job) -> bool:
    return job.status in TERMINAL_JOB


def apply_result(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    """Applies a worker's result; returns False when it changes nothing (stale or duplicate)."""
    job = record.job
    if is_terminal(job) or not 0 <= result.file_index < len(job.files):
        return False
    task = record.tasks[result.file_index]
    if task.task_id != result.task_id:
        return False
    item = job.files[result.file_index]
    if item.status in TERMINAL_FILE:
        return False
    kind = result.kind
    if kind == tasks_pb2.RESULT_KIND_STARTED:
        if item.status == jobs_pb2.FILE_STATUS_PROCESSING:
            return False
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
    elif kind == tasks_pb2.RESULT_KIND_PROGRESS:
        if result.progress <= item.progress:
            return False
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
        item.progress = result.progress
    elif kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        item.status = jobs_pb2.FILE_STATUS_COMPLETED
        item.progress = 100
        item.final_size = result.output_size
        item.mime_type = result.mime_type
        item.output_format = result.output_format
        for name in ("applied_quality", "width", "height", "duration"):
            if result.HasField(name):
                setattr(item, name, getattr(result, name))
    elif kind == tasks_pb2.RESULT_KIND_FAILED:
        item.status = jobs_pb2.FILE_STATUS_FAILED
        item.progress = 100
        item.error_code = result.error_code
        item.error_message = result.error_message
    else:
        return False
    derive(job)
    return True


def cancel(record: state_pb2.JobRecord) -> None:
    """Cancels a job that no worker has started; anything else is a 409."""
    job = record.job
    if job.status != jobs_pb2.JOB_STATUS_PENDING:
        status = jobs_pb2.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower()
        raise MeshError(
            Reason.CONFLICT,
            f"Only pending jobs can be cancelled; this job is {status}.",
            status=status,
        )
    for item in job.files:
        item.status = jobs_pb2.FILE_STATUS_CANCELLED
    job.status = jobs_pb2.JOB_STATUS_CANCELLED
    job.updated_at.CopyFrom(now())
    job.completed_at.CopyFrom(job.updated_at)


def derive(job: jobs_pb2.Job) -> None:
    """Recomputes status, progress and counters from the files."""
    files = job.files
    completed = sum(1 for f in files if f.status == jobs_pb2.FILE_STATUS_COMPLETED)
    failed = sum(1 for f in files if f.status == jobs_pb2.FILE_STATUS_FAILED)
    started = any(f.status != jobs_pb2.FILE_STATUS_PENDING for f in files)
    job.completed_files = completed
    job.failed_files = failed
    job.progress = sum(f.progress for f in files) // max(1, len(files))
    job.updated_at.CopyFrom(now())
    if files and completed + failed == len(files):
        if completed == 0:
            job.status = jobs_pb2.JOB_STATUS_FAILED
            job.error_message = _summarise_failures(job)
        else:
            job.status = jobs_pb2.JOB_STATUS_COMPLETED
            if failed:
                job.error_message = f"{failed} of {len(files)} files failed."
        job.completed_at.CopyFrom(job.updated_at)
    elif started:
        job.status = jobs_pb2.JOB_STATUS_PROCESSING


def _summarise_failures(job: jobs_pb2.Job) -> str:
    if len(job.files) == 1:
        return job.files[0].error_message
    return f"All {len(job.files)} files failed."
