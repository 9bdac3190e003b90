"""Tasks beyond one-file-one-task: an archive converted entry by entry, and the job's zip.

An archive asked for a non-archive format goes through three stages, all through the mesh:
UNPACK (archive worker: extract safely, store each member as a blob), one conversion per
member by the worker its content calls for, then PACK (archive worker: zip the outputs back
with the original folders, plus `conversion-report.json` naming what was skipped and why).
`createArchive` adds one PACK of every successful output once all files are done.

Everything here is pure: it reads and changes a `JobRecord` and returns the tasks to publish.
Task ids are deterministic, so publishing the same follow-up twice is dropped by JetStream.
"""

from __future__ import annotations

import json
import posixpath

from mesh.bus.tasks import ARCHIVE_SUFFIX, PackInput, TaskKind, TaskSpec, entry_task_id
from mesh.errors import MeshError
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, Family
from mesh.jobs.v1 import jobs_pb2
from mesh.options import ConversionOptions
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import routing

PACK_SUFFIX = ".pack"
SETTLED = frozenset(
    {jobs_pb2.FILE_STATUS_COMPLETED, jobs_pb2.FILE_STATUS_FAILED, jobs_pb2.FILE_STATUS_CANCELLED}
)


def output_filename(filename: str, output_format: str) -> str:
    """The client's name (folders kept) with the output format's extension."""
    folder, base = posixpath.split(filename)
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    fmt = OUTPUT_FORMATS.get(output_format)
    name = f"{stem or 'output'}.{fmt.extension}" if fmt else stem or "output"
    return posixpath.join(folder, name) if folder else name


def convert_spec(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> TaskSpec:
    job = record.job
    item = job.files[task.index]
    return TaskSpec(
        task_id=task.task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=task.index,
        source_blob=task.source_blob,
        source_format=item.detected_format,
        source_family=routing.family_of(item.detected_format),
        filename=item.filename,
        options=ConversionOptions.from_proto(task.options),
        output_blob=task.output_blob,
        compress=job.job_type == jobs_pb2.JOB_TYPE_COMPRESS,
        kind=TaskKind(task.kind or tasks_pb2.TASK_KIND_CONVERT),
    )


def record_unpacked(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, entries: list[tasks_pb2.UnpackedEntry]
) -> None:
    """Turns an UNPACK result into one conversion per convertible member; the others are
    recorded as skipped, with the reason."""
    job = record.job
    item = job.files[task.index]
    output_format = task.options.format
    for number, entry in enumerate(entries):
        planned = state_pb2.EntryTask(name=entry.name, size=entry.size)
        reason = entry.skipped_reason or _unconvertible(entry.detected_format, output_format)
        if reason:
            planned.status = jobs_pb2.FILE_STATUS_FAILED
            planned.error_message = reason
        else:
            planned.task_id = entry_task_id(job.job_id, task.index, number)
            planned.service = routing.route(entry.detected_format, output_format)
            planned.source_blob = entry.blob
            planned.output_blob = f"{task.output_blob}/o/{number}"
            planned.detected_format = entry.detected_format
            planned.output_name = output_filename(entry.name, output_format)
            planned.status = jobs_pb2.FILE_STATUS_PENDING
        task.entries.append(planned)
        item.entries.append(
            jobs_pb2.EntryResult(
                name=entry.name,
                status=planned.status,
                output_name=planned.output_name,
                error_message=planned.error_message,
            )
        )


def _unconvertible(detected_format: str, output_format: str) -> str:
    if INPUT_FAMILIES.get(detected_format) is Family.ARCHIVE:
        return "archives inside archives are not converted"
    try:
        service = routing.route(detected_format, output_format)
    except MeshError as error:
        return error.message
    if service == "archive":
        return f"this entry cannot be converted to {output_format}"
    return ""


def entry_spec(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, number: int
) -> tuple[str, TaskSpec]:
    job = record.job
    entry = task.entries[number]
    options = ConversionOptions.from_proto(task.options)
    return entry.service, TaskSpec(
        task_id=entry.task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=task.index,
        source_blob=entry.source_blob,
        source_format=entry.detected_format,
        source_family=routing.family_of(entry.detected_format),
        filename=posixpath.basename(entry.name),
        options=options,
        output_blob=entry.output_blob,
        compress=False,
        entry_index=number,
    )


def pack_spec(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> TaskSpec:
    """Zips the converted members back, with the report of every member."""
    job = record.job
    report = [
        {
            "name": e.name,
            "status": "converted" if e.status == jobs_pb2.FILE_STATUS_COMPLETED else "skipped",
            "output": e.output_name or None,
            "reason": e.error_message or None,
        }
        for e in task.entries
    ]
    return TaskSpec(
        task_id=task.task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=task.index,
        source_blob="",
        source_format="",
        source_family="",
        filename=job.files[task.index].filename,
        options=ConversionOptions(format="zip", compression=task.options.compression),
        output_blob=task.output_blob,
        compress=False,
        kind=TaskKind.PACK,
        inputs=tuple(
            PackInput(e.output_name, e.output_blob)
            for e in task.entries
            if e.status == jobs_pb2.FILE_STATUS_COMPLETED
        ),
        report=json.dumps({"entries": report}, indent=2),
    )


def archive_spec(record: state_pb2.JobRecord) -> TaskSpec:
    job = record.job
    inputs = tuple(
        PackInput(output_filename(item.filename, item.output_format), task.output_blob)
        for item, task in zip(job.files, record.tasks, strict=True)
        if item.status == jobs_pb2.FILE_STATUS_COMPLETED
    )
    return TaskSpec(
        task_id=record.archive_task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=0,
        source_blob="",
        source_format="",
        source_family="",
        filename=f"{job.job_id}.zip",
        options=ConversionOptions(format="zip"),
        output_blob=record.archive_blob,
        compress=False,
        kind=TaskKind.PACK,
        inputs=inputs,
        job_archive=True,
    )


def archive_due(record: state_pb2.JobRecord) -> bool:
    """Every file is done, some succeeded, and the job's zip was asked for and not built."""
    job = record.job
    files_done = all(item.status in SETTLED for item in job.files)
    any_output = any(item.status == jobs_pb2.FILE_STATUS_COMPLETED for item in job.files)
    settled = job.HasField("archive") and job.archive.status in SETTLED
    return job.create_archive and files_done and any_output and not settled


def start_archive(record: state_pb2.JobRecord) -> None:
    record.archive_task_id = f"{record.job.job_id}{ARCHIVE_SUFFIX}"
    record.archive_blob = f"out/{record.job.job_id}/archive"
    record.job.archive.status = jobs_pb2.FILE_STATUS_PROCESSING


def follow_ups(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> list[tuple[str, TaskSpec]]:
    """The tasks this (terminal) result unlocks: a member's conversions after an UNPACK, the
    PACK after the last member, the job's zip after the last file."""
    if result.kind not in (tasks_pb2.RESULT_KIND_SUCCEEDED, tasks_pb2.RESULT_KIND_FAILED):
        return []
    dispatches: list[tuple[str, TaskSpec]] = []
    if not result.job_archive and 0 <= result.file_index < len(record.tasks):
        task = record.tasks[result.file_index]
        item = record.job.files[result.file_index]
        if task.kind == tasks_pb2.TASK_KIND_UNPACK and item.status not in SETTLED:
            if task.task_id.endswith(PACK_SUFFIX):
                dispatches.append(("archive", pack_spec(record, task)))
            else:
                dispatches.extend(
                    entry_spec(record, task, n)
                    for n, entry in enumerate(task.entries)
                    if entry.status == jobs_pb2.FILE_STATUS_PENDING
                )
    if record.archive_task_id and record.job.archive.status not in SETTLED:
        dispatches.append(("archive", archive_spec(record)))
    return dispatches
