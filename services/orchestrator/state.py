"""Job state transitions, as pure functions over the `JobRecord` kept in KV.

The job's status, progress and counters are always derived from its files here, in one place,
so that every replica applying results in any order reaches the same record. A file converted
by one task is handled here; an archive's stages and the job's zip in `fanout`.
"""

from __future__ import annotations

import posixpath
import time

from google.protobuf.timestamp_pb2 import Timestamp

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import fanout, statuses, tooljobs, toolrouting


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def is_terminal(job: jobs_pb2.Job) -> bool:
    return job.status in statuses.TERMINAL_JOB


def apply_result(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    """Applies a worker's result; returns False when it changes nothing (stale or duplicate)."""
    if is_terminal(record.job):
        return False
    if result.job_archive:
        changed = fanout.apply_job_archive(record, result)
    else:
        changed = _apply_to_file(record, result)
    if changed:
        derive(record)
    return changed


def _apply_to_file(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    files = record.job.files
    index = result.file_index
    if not 0 <= index < len(files) or files[index].status in statuses.TERMINAL_FILE:
        return False
    task = record.tasks[index]
    if tooljobs.extracts(record):
        return tooljobs.apply_extracted(record, result)
    if result.HasField("entry_index"):
        return fanout.apply_entry(record, task, result)
    if fanout.stage_task_id(task) != result.task_id:
        return False
    if task.stage in fanout.ARCHIVE_STAGES:
        return fanout.apply_stage(record, task, result)
    changed = _apply_conversion(files[index], result)
    if record.job.tool.tool and result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        # The tool names its output's format only now (a trim that keeps the input's).
        item = files[index]
        item.output_filename = toolrouting.output_name(
            posixpath.basename(item.filename), item.output_format
        )
    return changed


def _apply_conversion(item: jobs_pb2.FileResult, result: tasks_pb2.Result) -> bool:
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
        statuses.complete(item, result)
    elif kind == tasks_pb2.RESULT_KIND_FAILED:
        statuses.fail(item, result.error_code, result.error_message)
    else:
        return False
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


def derive(record: state_pb2.JobRecord) -> None:
    """Recomputes status, progress and counters from the files (and the job's zip)."""
    job = record.job
    files = job.files
    completed = sum(1 for f in files if f.status == jobs_pb2.FILE_STATUS_COMPLETED)
    failed = sum(1 for f in files if f.status == jobs_pb2.FILE_STATUS_FAILED)
    started = any(f.status != jobs_pb2.FILE_STATUS_PENDING for f in files)
    job.completed_files = completed
    job.failed_files = failed
    job.progress = sum(f.progress for f in files) // max(1, len(files))
    job.updated_at.CopyFrom(now())
    fanout.start_job_archive(record)
    archive_pending = fanout.job_archive_pending(record)
    if files and completed + failed == len(files) and not archive_pending:
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
        if archive_pending:
            job.progress = min(job.progress, 99)


def _summarise_failures(job: jobs_pb2.Job) -> str:
    if len(job.files) == 1:
        return job.files[0].error_message
    return f"All {len(job.files)} files failed."
