"""The tasks the orchestrator sends, built from a job record, and their ids.

Task ids are deterministic, so publishing the same task twice is dropped by JetStream
(`Nats-Msg-Id`); nobody reads anything out of them: what a task is for travels in its fields.
"""

from __future__ import annotations

import json
import posixpath

from mesh.bus.tasks import PackInput, TaskKind, TaskSpec
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, Family
from mesh.jobs.v1 import jobs_pb2
from mesh.options import ConversionOptions
from mesh.state.v1 import state_pb2
from services.orchestrator import routing


def file_task_id(job_id: str, index: int) -> str:
    return f"{job_id}.{index}"


def entry_task_id(job_id: str, index: int, entry: int) -> str:
    return f"{job_id}.{index}.e{entry}"


def pack_task_id(job_id: str, index: int) -> str:
    return f"{job_id}.{index}.pack"


def archive_task_id(job_id: str) -> str:
    return f"{job_id}.archive"


_TAR_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz")
_STREAM_OUTPUTS = frozenset({"gz", "bz2", "xz"})


def output_filename(filename: str, output_format: str, source_format: str = "") -> str:
    """The client's name (folders kept) with the output format's extension.

    gz/bz2/xz of a plain file keeps the whole name (`photo.jpg.gz`, as gzip names it); of an
    archive it holds a tar (`my.tar.gz`; the archive worker renames a single stream).
    """
    folder, base = posixpath.split(filename)
    fmt = OUTPUT_FORMATS.get(output_format)
    archive_input = INPUT_FAMILIES.get(source_format) is Family.ARCHIVE
    if fmt and output_format in _STREAM_OUTPUTS and not archive_input and base.strip("."):
        name = f"{base}.{fmt.extension}"
    else:
        lower = base.lower()
        tar = next((s for s in _TAR_SUFFIXES if lower.endswith(s) and len(base) > len(s)), "")
        if tar:
            stem = base[: -len(tar)]
        else:
            stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
        extension = fmt.extension if fmt else ""
        if output_format in _STREAM_OUTPUTS:
            extension = f"tar.{extension}"
        name = f"{stem or 'output'}.{extension}" if extension else stem or "output"
    return posixpath.join(folder, name) if folder else name


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `stem (2).ext`, `stem (3).ext`, ... when it is taken; records the choice.
    The archive worker deduplicates the same way, so reports name entries as stored."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "/" in suffix or not stem or stem.endswith("/"):
        stem, dot, suffix = name, "", ""
    candidate, counter = name, 2
    while candidate in taken:
        candidate = f"{stem} ({counter}){dot}{suffix}"
        counter += 1
    taken.add(candidate)
    return candidate


def file_spec(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> TaskSpec:
    """The task a file starts with: its conversion, or the UNPACK of an archive."""
    job = record.job
    item = job.files[task.index]
    unpack = task.stage == state_pb2.FILE_STAGE_UNPACK
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
        kind=TaskKind.UNPACK if unpack else TaskKind.CONVERT,
    )


def entry_spec(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, number: int
) -> tuple[str, TaskSpec]:
    """(service, task) converting member `number` of an unpacked archive."""
    job = record.job
    entry = task.entries[number]
    return entry.service, TaskSpec(
        task_id=entry.task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=task.index,
        source_blob=entry.source_blob,
        source_format=entry.detected_format,
        source_family=routing.family_of(entry.detected_format),
        filename=posixpath.basename(entry.name),
        options=ConversionOptions.from_proto(task.options),
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
        task_id=task.pack_task_id,
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
    """The job's zip (createArchive): every successful output, named after its file."""
    job = record.job
    inputs = tuple(
        PackInput(
            item.output_filename or output_filename(item.filename, item.output_format),
            task.output_blob,
        )
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
