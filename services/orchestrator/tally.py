"""Counting jobs and files as they are created and reach a terminal status.

`JobStore` calls these around every write, the one place every change of a job goes through
(results, cancellation, anything else): a transition is counted once, by the replica whose
compare-and-set wrote it, however often a result is redelivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh import telemetry
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import statuses


@dataclass(frozen=True)
class Snapshot:
    """The statuses of a job and its files before a change."""

    job: int
    files: tuple[int, ...]


def snapshot(record: state_pb2.JobRecord) -> Snapshot:
    return Snapshot(record.job.status, tuple(item.status for item in record.job.files))


def job_type(job: jobs_pb2.Job) -> str:
    """convert, compress, tool or transfer (an unspecified type is a conversion)."""
    if job.job_type == jobs_pb2.JOB_TYPE_UNSPECIFIED:
        return "convert"
    return jobs_pb2.JobType.Name(job.job_type).removeprefix("JOB_TYPE_").lower()


def created(record: state_pb2.JobRecord) -> None:
    telemetry.JOBS_CREATED.labels(job_type(record.job)).inc()


def changed(before: Snapshot, record: state_pb2.JobRecord) -> None:
    """Counts every file and the job that became terminal since `before`."""
    job = record.job
    for index, item in enumerate(job.files):
        was = before.files[index] if index < len(before.files) else jobs_pb2.FILE_STATUS_PENDING
        if was in statuses.TERMINAL_FILE or item.status not in statuses.TERMINAL_FILE:
            continue
        service = record.tasks[index].service if index < len(record.tasks) else ""
        telemetry.FILES_FINISHED.labels(
            service, item.output_format, _file_outcome(item.status), item.error_code
        ).inc()
    if before.job in statuses.TERMINAL_JOB or job.status not in statuses.TERMINAL_JOB:
        return
    kind, outcome = job_type(job), _job_outcome(job.status)
    telemetry.JOBS_FINISHED.labels(kind, outcome).inc()
    lasted = job.completed_at.ToNanoseconds() - job.created_at.ToNanoseconds()
    telemetry.JOB_SECONDS.labels(kind, outcome).observe(max(lasted, 0) / 1e9)


def _file_outcome(status: jobs_pb2.FileStatus.ValueType) -> str:
    return jobs_pb2.FileStatus.Name(status).removeprefix("FILE_STATUS_").lower()


def _job_outcome(status: jobs_pb2.JobStatus.ValueType) -> str:
    return jobs_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").lower()
