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
from services.orchestrator import fanout

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
    if is_terminal(job):
        return False
    index = result.file_index
    settled = not 0 <= index < len(job.files) or job.files[index].status in TERMINAL_FILE
    if result.job_archive:
        changed = _apply_archive(record, result)
    elif settled:
        return False
    elif result.HasField("entry_index"):
        changed = _apply_entry(record, result)
    elif record.tasks[result.file_index].task_id != result.task_id:
        return False
    else:
        changed = _apply_file(record, result)
    if changed:
        derive(record)
    return changed


def _apply_file(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    task = record.tasks[result.file_index]
    item = record.job.files[result.file_index]
    kind = result.kind
    unpacked = (
        kind == tasks_pb2.RESULT_KIND_SUCCEEDED
        and task.kind == tasks_pb2.TASK_KIND_UNPACK
        and not task.task_id.endswith(fanout.PACK_SUFFIX)
    )
    if unpacked:
        fanout.record_unpacked(record, task, list(result.entries))
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
        item.progress = max(item.progress, 10)
        _after_entries(record, task)
    elif kind == tasks_pb2.RESULT_KIND_STARTED:
        if item.status == jobs_pb2.FILE_STATUS_PROCESSING:
            return False
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
    elif kind == tasks_pb2.RESULT_KIND_PROGRESS:
        if result.progress <= item.progress or task.kind == tasks_pb2.TASK_KIND_UNPACK:
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
        _fail(item, result.error_code, result.error_message)
    else:
        return False
    return True


def _apply_entry(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    task = record.tasks[result.file_index]
    number = result.entry_index
    if number >= len(task.entries) or task.entries[number].task_id != result.task_id:
        return False
    entry = task.entries[number]
    if entry.status in TERMINAL_FILE:
        return False
    if result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        entry.status = jobs_pb2.FILE_STATUS_COMPLETED
    elif result.kind == tasks_pb2.RESULT_KIND_FAILED:
        entry.status = jobs_pb2.FILE_STATUS_FAILED
        entry.error_message = result.error_message
    elif entry.status == jobs_pb2.FILE_STATUS_PENDING:
        entry.status = jobs_pb2.FILE_STATUS_PROCESSING
    else:
        return False
    mirror = record.job.files[result.file_index].entries[number]
    mirror.status = entry.status
    mirror.error_message = entry.error_message
    _after_entries(record, task)
    return True


def _after_entries(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> None:
    """Moves an unpacked archive to its PACK stage once every member is settled."""
    item = record.job.files[task.index]
    settled = sum(1 for e in task.entries if e.status in TERMINAL_FILE)
    total = max(1, len(task.entries))
    item.progress = max(item.progress, 10 + 80 * settled // total)
    if settled < len(task.entries):
        return
    if any(e.status == jobs_pb2.FILE_STATUS_COMPLETED for e in task.entries):
        task.task_id = f"{record.job.job_id}.{task.index}{fanout.PACK_SUFFIX}"
        return
    _fail(
        item,
        Reason.UNSUPPORTED_PAIR.value,
        f"No entry of this archive could be converted to {task.options.format}.",
    )


def _apply_archive(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    archive = record.job.archive
    if result.task_id != record.archive_task_id or archive.status in TERMINAL_FILE:
        return False
    if result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        archive.status = jobs_pb2.FILE_STATUS_COMPLETED
        archive.size = result.output_size
    elif result.kind == tasks_pb2.RESULT_KIND_FAILED:
        archive.status = jobs_pb2.FILE_STATUS_FAILED
        archive.error_message = result.error_message
    else:
        return False
    return True


def _fail(item: jobs_pb2.FileResult, code: str, message: str) -> None:
    item.status = jobs_pb2.FILE_STATUS_FAILED
    item.progress = 100
    item.error_code = code
    item.error_message = message


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
    if fanout.archive_due(record) and not record.archive_task_id:
        fanout.start_archive(record)
    archive_pending = bool(record.archive_task_id) and job.archive.status not in TERMINAL_FILE
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
