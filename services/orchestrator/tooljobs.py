"""Media tool jobs and transfers: how each becomes a job record, and (for an extracting
transfer) how the archive's members become the job's files.

A tool job has one output: the tool's run over the job's files (several only for
image-to-pdf), plus the tool's second file (watermark's logo). It is routed by the sources'
family (`toolrouting`), its parameters are parsed here once more (every default filled in, so
the job shows what was run) and parsed again by the worker.

A transfer is the fetched file itself: the job is complete when it is created, its output the
stored source. With `extract`, the archive worker unpacks it within its limits and each member
becomes one of the job's files (members it refused are failed files, with its reason).
"""

from __future__ import annotations

import posixpath

from mesh.bus.tasks import TaskKind, TaskSpec, ToolInput
from mesh.errors import MeshError, Reason
from mesh.fields import to_fields
from mesh.formats import OUTPUT_FORMATS, Family
from mesh.jobs.v1 import jobs_pb2
from mesh.options import ConversionOptions
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from mesh.tools import catalog
from mesh.tools.params import WatermarkParams
from services.orchestrator import routing, specs, statuses, toolrouting

# Families a watermark's logo may be.
LOGO_FAMILIES = frozenset({Family.IMAGE})


def _family(upload: state_pb2.UploadRecord) -> Family:
    try:
        return Family(upload.blob.family)
    except ValueError:
        return Family.UNKNOWN


def _mime_type(source_format: str) -> str:
    known = OUTPUT_FORMATS.get(source_format)
    return known.mime_type if known else "application/octet-stream"


def build_tool(
    record: state_pb2.JobRecord,
    request: jobs_pb2.CreateJobRequest,
    uploads: list[state_pb2.UploadRecord],
    extra: state_pb2.UploadRecord | None,
) -> None:
    """Adds the tool's one file and task to a new record; raises INVALID_FIELD (parameters,
    file counts), NOT_FOUND (no such tool) or UNSUPPORTED_PAIR (a family the tool does not
    take)."""
    job = record.job
    tool = catalog.tool_named(request.tool.tool)
    if len(uploads) > tool.max_files:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"The {tool.name} tool takes {_files(tool.max_files)}.",
            fields={"files": f"at most {tool.max_files}"},
        )
    first = request.files[0]
    filename = first.filename or uploads[0].filename
    values = dict(request.tool.params)
    if tool.name == "inspect" and not values.get("filename"):
        values["filename"] = posixpath.basename(filename)
    params = catalog.params_for(tool, values)
    if extra is not None and tool.extra_file is None:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"The {tool.name} tool takes no second file.",
            fields={"extraFile": "is not read by this tool"},
        )
    if isinstance(params, WatermarkParams):
        params.require_one(extra is not None)
    services = {
        toolrouting.tool_service(tool, _family(upload), upload.blob.detected_format)
        for upload in uploads
    }
    if len(services) != 1:
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"The {tool.name} tool's files must all be of one kind.",
            tool=tool.name,
        )
    if extra is not None and _family(extra) not in LOGO_FAMILIES:
        shown = extra.blob.detected_format or "an unrecognised format"
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"The {tool.extra_file} must be an image (png, jpg, webp, gif or avif), not {shown}.",
            fields={str(tool.extra_file): "must be an image"},
        )
    source_format = uploads[0].blob.detected_format
    output_format = toolrouting.expected_format(tool, params, source_format)
    job.tool.tool = tool.name
    job.tool.params.update(to_fields(params))
    record.tasks.append(
        state_pb2.FileTask(
            index=0,
            task_id=specs.file_task_id(job.job_id, 0),
            service=services.pop(),
            source_blob=f"src/{first.blob_id}",
            output_blob=f"out/{job.job_id}/0",
            stage=state_pb2.FILE_STAGE_CONVERT,
            tool_sources=[
                tasks_pb2.ToolInput(blob=f"src/{spec.blob_id}", format=upload.blob.detected_format)
                for spec, upload in zip(request.files, uploads, strict=True)
            ],
            tool_extra=tasks_pb2.ToolInput(
                blob=f"src/{request.extra_file.blob_id}", format=extra.blob.detected_format
            )
            if extra is not None
            else None,
        )
    )
    job.files.append(
        jobs_pb2.FileResult(
            index=0,
            filename=filename,
            output_filename=toolrouting.output_name(posixpath.basename(filename), output_format),
            status=jobs_pb2.FILE_STATUS_PENDING,
            original_size=sum(upload.blob.size for upload in uploads),
            detected_format=source_format,
            output_format=output_format,
        )
    )


def _files(count: int) -> str:
    return "one file" if count == 1 else f"at most {count} files"


def build_transfer(
    record: state_pb2.JobRecord,
    request: jobs_pb2.CreateJobRequest,
    uploads: list[state_pb2.UploadRecord],
) -> None:
    """The fetched file as the job's one file: complete already, or (`extract`) unpacked by
    the archive worker first."""
    job = record.job
    if len(uploads) != 1:
        raise MeshError(
            Reason.INVALID_FIELD,
            "A transfer takes one file.",
            fields={"sourceUrl": "one URL per transfer"},
        )
    (spec,), (upload,) = request.files, uploads
    blob = upload.blob
    filename = spec.filename or upload.filename
    source = f"src/{spec.blob_id}"
    item = jobs_pb2.FileResult(
        index=0,
        filename=filename,
        output_filename=posixpath.basename(filename),
        status=jobs_pb2.FILE_STATUS_PENDING,
        original_size=blob.size,
        detected_format=blob.detected_format,
        output_format=blob.detected_format,
    )
    task = state_pb2.FileTask(
        index=0, task_id=specs.file_task_id(job.job_id, 0), source_blob=source, output_blob=source
    )
    if request.extract:
        if _family(upload) is not Family.ARCHIVE:
            raise MeshError(
                Reason.UNSUPPORTED_PAIR,
                f"extract unpacks archives (zip, tar, tgz, 7z, rar, ...); this file is "
                f"{blob.detected_format or 'not one'}.",
                fields={"extract": "needs an archive"},
            )
        task.service = "archive"
        task.stage = state_pb2.FILE_STAGE_UNPACK
        task.output_blob = f"out/{job.job_id}/0"
    else:
        # Nothing to run: the stored source is the output.
        task.stage = state_pb2.FILE_STAGE_CONVERT
        _stored(item, blob.size, blob.detected_format)
    record.tasks.append(task)
    job.files.append(item)


def _stored(item: jobs_pb2.FileResult, size: int, detected_format: str) -> None:
    item.status = jobs_pb2.FILE_STATUS_COMPLETED
    item.progress = 100
    item.final_size = size
    item.mime_type = _mime_type(detected_format)
    item.output_format = detected_format


def extracts(record: state_pb2.JobRecord) -> bool:
    return record.job.job_type == jobs_pb2.JOB_TYPE_TRANSFER and any(
        task.stage == state_pb2.FILE_STAGE_UNPACK for task in record.tasks
    )


def apply_extracted(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    """A result of an extracting transfer's UNPACK: once it succeeded, the members are the
    job's files (each stored by the worker, or failed with the reason it was skipped)."""
    (task,), (item,) = record.tasks, record.job.files
    if result.task_id != task.task_id or item.status in statuses.TERMINAL_FILE:
        return False
    if result.kind == tasks_pb2.RESULT_KIND_STARTED:
        if item.status == jobs_pb2.FILE_STATUS_PROCESSING:
            return False
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
        return True
    if result.kind == tasks_pb2.RESULT_KIND_FAILED:
        statuses.fail(item, result.error_code, result.error_message)
        return True
    if result.kind != tasks_pb2.RESULT_KIND_SUCCEEDED:
        return False
    if not result.entries:
        statuses.fail(item, Reason.CORRUPT_INPUT.value, "The archive holds no files.")
        return True
    job = record.job
    del job.files[:]
    del record.tasks[:]
    taken: set[str] = set()
    for number, entry in enumerate(result.entries):
        member = jobs_pb2.FileResult(
            index=number,
            filename=entry.name,
            output_filename=specs.unique_name(entry.name, taken),
            original_size=entry.size,
            detected_format=entry.detected_format,
        )
        if entry.blob:
            _stored(member, entry.size, entry.detected_format)
        else:
            statuses.fail(member, Reason.UNSUPPORTED_FORMAT.value, entry.skipped_reason)
        job.files.append(member)
        record.tasks.append(
            state_pb2.FileTask(
                index=number,
                task_id=f"{task.task_id}.m{number}",
                source_blob=entry.blob,
                output_blob=entry.blob,
                stage=state_pb2.FILE_STAGE_CONVERT,
            )
        )
    return True


def task_spec(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> TaskSpec:
    """The TOOL task of a tool job's one file."""
    job = record.job
    item = job.files[task.index]
    sources = tuple(ToolInput.from_proto(source) for source in task.tool_sources)
    return TaskSpec(
        task_id=task.task_id,
        job_id=job.job_id,
        tenant=job.tenant,
        file_index=task.index,
        source_blob=task.source_blob,
        source_format=item.detected_format,
        source_family=routing.family_of(item.detected_format),
        filename=item.filename,
        options=ConversionOptions(),
        output_blob=task.output_blob,
        compress=False,
        kind=TaskKind.TOOL,
        tool=job.tool.tool,
        params=dict(job.tool.params),
        sources=sources,
        extra=ToolInput.from_proto(task.tool_extra) if task.HasField("tool_extra") else None,
    )
