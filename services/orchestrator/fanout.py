"""Archive transitions: an archive converted entry by entry, and the job's zip.

An archive asked for a non-archive format moves through the stages of its `FileTask`, each
through the mesh:
- UNPACK: the archive worker extracts it safely and stores each member as a blob;
- ENTRIES: each member is converted by the worker its content calls for;
- PACK: the archive worker zips the outputs back with the original folders, plus
  `conversion-report.json` naming what was skipped and why.
`createArchive` adds one PACK of every successful output once all files are done.

Everything here is pure: it reads and changes a `JobRecord`; `follow_ups` names the tasks to
publish. `state.apply_result` hands every result of these stages here.
"""

from __future__ import annotations

from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.formats import INPUT_FAMILIES, Family
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import routing, specs, statuses

ARCHIVE_STAGES = frozenset(
    {state_pb2.FILE_STAGE_UNPACK, state_pb2.FILE_STAGE_ENTRIES, state_pb2.FILE_STAGE_PACK}
)


def stage_task_id(task: state_pb2.FileTask) -> str:
    """The task whose results the file's stage takes: the PACK once packing, else the file's
    first task (whose repeats an ENTRIES stage ignores)."""
    return task.pack_task_id if task.stage == state_pb2.FILE_STAGE_PACK else task.task_id


def apply_stage(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, result: tasks_pb2.Result
) -> bool:
    """A result of the file's own task in an archive stage: its UNPACK or its PACK."""
    item = record.job.files[task.index]
    if task.stage == state_pb2.FILE_STAGE_ENTRIES:
        return False  # a repeat of the UNPACK result: its entries are under way
    if result.kind == tasks_pb2.RESULT_KIND_STARTED:
        if item.status == jobs_pb2.FILE_STATUS_PROCESSING:
            return False
        item.status = jobs_pb2.FILE_STATUS_PROCESSING
        return True
    if result.kind == tasks_pb2.RESULT_KIND_FAILED:
        statuses.fail(item, result.error_code, result.error_message)
        return True
    if result.kind != tasks_pb2.RESULT_KIND_SUCCEEDED:
        return False  # the file's progress is its entries', not UNPACK's or PACK's
    if task.stage == state_pb2.FILE_STAGE_PACK:
        statuses.take_output(task, result)
        statuses.complete(item, result)
        return True
    _record_unpacked(record, task, list(result.entries))
    task.stage = state_pb2.FILE_STAGE_ENTRIES
    item.status = jobs_pb2.FILE_STATUS_PROCESSING
    item.progress = max(item.progress, 10)
    _after_entries(record, task)
    return True


def apply_entry(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, result: tasks_pb2.Result
) -> bool:
    """A result of one member's conversion."""
    number = result.entry_index
    if task.stage != state_pb2.FILE_STAGE_ENTRIES or not 0 <= number < len(task.entries):
        return False
    entry = task.entries[number]
    if entry.task_id != result.task_id or entry.status in statuses.TERMINAL_FILE:
        return False
    if result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        statuses.take_output(entry, result)
        entry.status = jobs_pb2.FILE_STATUS_COMPLETED
    elif result.kind == tasks_pb2.RESULT_KIND_FAILED:
        entry.status = jobs_pb2.FILE_STATUS_FAILED
        entry.error_message = result.error_message
    elif entry.status == jobs_pb2.FILE_STATUS_PENDING:
        entry.status = jobs_pb2.FILE_STATUS_PROCESSING
    else:
        return False
    mirror = record.job.files[task.index].entries[number]
    mirror.status = entry.status
    mirror.error_message = entry.error_message
    _after_entries(record, task)
    return True


def apply_job_archive(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> bool:
    """A result of the job's zip (createArchive)."""
    archive = record.job.archive
    if result.task_id != record.archive_task_id or archive.status in statuses.TERMINAL_FILE:
        return False
    if result.kind == tasks_pb2.RESULT_KIND_SUCCEEDED:
        archive.status = jobs_pb2.FILE_STATUS_COMPLETED
        archive.size = result.output_size
        record.archive_blob = result.output_blob or record.archive_blob
    elif result.kind == tasks_pb2.RESULT_KIND_FAILED:
        archive.status = jobs_pb2.FILE_STATUS_FAILED
        archive.error_message = result.error_message
    else:
        return False
    return True


def start_job_archive(record: state_pb2.JobRecord) -> None:
    """Starts the job's zip once it is due: it was asked for, every file is done, and some
    succeeded."""
    job = record.job
    files_done = all(item.status in statuses.TERMINAL_FILE for item in job.files)
    any_output = any(item.status == jobs_pb2.FILE_STATUS_COMPLETED for item in job.files)
    if record.archive_task_id or not (job.create_archive and files_done and any_output):
        return
    record.archive_task_id = specs.archive_task_id(job.job_id)
    record.archive_blob = f"out/{job.job_id}/archive"
    job.archive.status = jobs_pb2.FILE_STATUS_PROCESSING


def job_archive_pending(record: state_pb2.JobRecord) -> bool:
    return bool(record.archive_task_id) and record.job.archive.status not in statuses.TERMINAL_FILE


def follow_ups(record: state_pb2.JobRecord, result: tasks_pb2.Result) -> list[tuple[str, TaskSpec]]:
    """The tasks this (final) result unlocks: a member's conversions after an UNPACK, the
    PACK after the last member, the job's zip after the last file."""
    if result.kind not in statuses.FINAL_RESULTS:
        return []
    dispatches: list[tuple[str, TaskSpec]] = []
    if not result.job_archive and 0 <= result.file_index < len(record.tasks):
        task = record.tasks[result.file_index]
        if record.job.files[task.index].status not in statuses.TERMINAL_FILE:
            if task.stage == state_pb2.FILE_STAGE_PACK:
                dispatches.append(("archive", specs.pack_spec(record, task)))
            elif task.stage == state_pb2.FILE_STAGE_ENTRIES:
                dispatches.extend(
                    specs.entry_spec(record, task, n)
                    for n, entry in enumerate(task.entries)
                    if entry.status == jobs_pb2.FILE_STATUS_PENDING
                )
    if job_archive_pending(record):
        dispatches.append(("archive", specs.archive_spec(record)))
    return dispatches


def _record_unpacked(
    record: state_pb2.JobRecord, task: state_pb2.FileTask, entries: list[tasks_pb2.UnpackedEntry]
) -> None:
    """Plans one conversion per convertible member; the others are recorded as skipped, with
    the reason."""
    job = record.job
    item = job.files[task.index]
    output_format = task.options.format
    taken: set[str] = set()
    for number, entry in enumerate(entries):
        planned = state_pb2.EntryTask(name=entry.name, size=entry.size)
        reason = entry.skipped_reason or _unconvertible(entry.detected_format, output_format)
        if reason:
            planned.status = jobs_pb2.FILE_STATUS_FAILED
            planned.error_message = reason
        else:
            planned.task_id = specs.entry_task_id(job.job_id, task.index, number)
            planned.service = routing.route(entry.detected_format, output_format)
            planned.source_blob = entry.blob
            planned.output_blob = f"{task.output_blob}/o/{number}"
            planned.detected_format = entry.detected_format
            # Unique as the PACK stores them, so the report names entries as stored.
            name = specs.output_filename(entry.name, output_format)
            planned.output_name = specs.unique_name(name, taken)
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


def _after_entries(record: state_pb2.JobRecord, task: state_pb2.FileTask) -> None:
    """Moves the archive to its PACK stage once every member is settled; with no member
    converted, the file fails."""
    item = record.job.files[task.index]
    settled = sum(1 for e in task.entries if e.status in statuses.TERMINAL_FILE)
    item.progress = max(item.progress, 10 + 80 * settled // max(1, len(task.entries)))
    if settled < len(task.entries):
        return
    if any(e.status == jobs_pb2.FILE_STATUS_COMPLETED for e in task.entries):
        task.stage = state_pb2.FILE_STAGE_PACK
        task.pack_task_id = specs.pack_task_id(record.job.job_id, task.index)
        return
    statuses.fail(
        item,
        Reason.UNSUPPORTED_PAIR.value,
        f"No entry of this archive could be converted to {task.options.format}.",
    )
