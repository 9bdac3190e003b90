"""Archive transitions: UNPACK, one conversion per member, PACK, and the job's zip, applied
through `state.apply_result` as the results consumer does, with the tasks each result unlocks."""

from __future__ import annotations

import json

import pytest

from mesh.bus.tasks import TaskKind
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import fanout, specs, state

STARTED = tasks_pb2.RESULT_KIND_STARTED
PROGRESS = tasks_pb2.RESULT_KIND_PROGRESS
SUCCEEDED = tasks_pb2.RESULT_KIND_SUCCEEDED
FAILED = tasks_pb2.RESULT_KIND_FAILED
UNPACK = state_pb2.FILE_STAGE_UNPACK
ENTRIES = state_pb2.FILE_STAGE_ENTRIES
PACK = state_pb2.FILE_STAGE_PACK
PENDING = jobs_pb2.FILE_STATUS_PENDING
PROCESSING = jobs_pb2.FILE_STATUS_PROCESSING
COMPLETED = jobs_pb2.FILE_STATUS_COMPLETED
FILE_FAILED = jobs_pb2.FILE_STATUS_FAILED


def archive_job(files: int = 1, *, create_archive: bool = False) -> state_pb2.JobRecord:
    """A job of zip files asked for png: each is unpacked and its members converted."""
    job = jobs_pb2.Job(job_id="j", tenant="t", create_archive=create_archive)
    record = state_pb2.JobRecord(job=job)
    for index in range(files):
        record.tasks.append(
            state_pb2.FileTask(
                index=index,
                task_id=specs.file_task_id("j", index),
                service="archive",
                source_blob=f"src/{index}",
                output_blob=f"out/j/{index}",
                options=jobs_pb2.FileOptions(format="png"),
                stage=UNPACK,
            )
        )
        record.job.files.append(
            jobs_pb2.FileResult(
                index=index, filename=f"photos{index}.zip", status=PENDING, output_format="png"
            )
        )
    return record


def unpacked(index: int, *members: tuple[str, str]) -> tasks_pb2.Result:
    """The UNPACK result: (name, sniffed format) per member; an empty format was skipped."""
    result = tasks_pb2.Result(task_id=f"j.{index}", file_index=index, kind=SUCCEEDED)
    for number, (name, detected) in enumerate(members):
        if detected:
            result.entries.add(
                name=name, blob=f"out/j/{index}/e/{number}", size=10, detected_format=detected
            )
        else:
            result.entries.add(name=name, size=10, skipped_reason="symbolic link not extracted")
    return result


def of_entry(index: int, number: int, kind: int, **fields: object) -> tasks_pb2.Result:
    return tasks_pb2.Result(
        task_id=specs.entry_task_id("j", index, number),
        file_index=index,
        entry_index=number,
        kind=kind,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def packed(index: int, kind: int = SUCCEEDED) -> tasks_pb2.Result:
    return tasks_pb2.Result(
        task_id=specs.pack_task_id("j", index),
        file_index=index,
        kind=kind,  # type: ignore[arg-type]
        output_size=99,
        mime_type="application/zip",
        output_format="zip",
    )


def at_stage(stage: int) -> state_pb2.JobRecord:
    """One archive file brought to `stage` through real results."""
    record = archive_job()
    if stage in (ENTRIES, PACK):
        state.apply_result(record, unpacked(0, ("a.jpg", "jpg"), ("b.gif", "gif")))
    if stage == PACK:
        state.apply_result(record, of_entry(0, 0, SUCCEEDED))
        state.apply_result(record, of_entry(0, 1, SUCCEEDED))
    assert record.tasks[0].stage == stage
    return record


@pytest.mark.parametrize(
    ("stage", "result", "changes", "then_stage", "then_status"),
    [
        (UNPACK, tasks_pb2.Result(task_id="j.0", kind=STARTED), True, UNPACK, PROCESSING),
        (UNPACK, tasks_pb2.Result(task_id="j.0", kind=PROGRESS, progress=50), False, UNPACK, None),
        (UNPACK, unpacked(0, ("a.jpg", "jpg")), True, ENTRIES, PROCESSING),
        (UNPACK, tasks_pb2.Result(task_id="j.0", kind=FAILED), True, UNPACK, FILE_FAILED),
        (UNPACK, of_entry(0, 0, SUCCEEDED), False, UNPACK, PENDING),
        (UNPACK, packed(0), False, UNPACK, PENDING),
        (ENTRIES, unpacked(0, ("c.jpg", "jpg")), False, ENTRIES, PROCESSING),
        (ENTRIES, of_entry(0, 0, STARTED), True, ENTRIES, PROCESSING),
        (ENTRIES, of_entry(0, 0, SUCCEEDED), True, ENTRIES, PROCESSING),
        (ENTRIES, of_entry(0, 7, SUCCEEDED), False, ENTRIES, PROCESSING),
        (ENTRIES, of_entry(0, -1, SUCCEEDED), False, ENTRIES, PROCESSING),
        (ENTRIES, packed(0), False, ENTRIES, PROCESSING),
        (PACK, of_entry(0, 0, FAILED), False, PACK, PROCESSING),
        (PACK, tasks_pb2.Result(task_id="j.0.pack", kind=STARTED), False, PACK, PROCESSING),
        (PACK, tasks_pb2.Result(task_id="j.0.pack", kind=PROGRESS, progress=95), False, PACK, None),
        (PACK, packed(0), True, PACK, COMPLETED),
        (PACK, packed(0, FAILED), True, PACK, FILE_FAILED),
        (PACK, unpacked(0, ("a.jpg", "jpg")), False, PACK, PROCESSING),
    ],
)
def test_each_stage_takes_only_its_own_results(
    stage: int, result: tasks_pb2.Result, changes: bool, then_stage: int, then_status: int | None
) -> None:
    record = at_stage(stage)
    before = record.job.files[0].status
    assert state.apply_result(record, result) is changes
    assert record.tasks[0].stage == then_stage
    assert record.job.files[0].status == (before if then_status is None else then_status)


def test_unpack_plans_a_conversion_per_member_and_records_the_skipped() -> None:
    record = archive_job()
    result = unpacked(0, ("a.jpg", "jpg"), ("link", ""), ("song.wav", "wav"), ("in.zip", "zip"))
    assert state.apply_result(record, result)
    entries = record.tasks[0].entries
    assert [e.status for e in entries] == [PENDING, FILE_FAILED, FILE_FAILED, FILE_FAILED]
    assert (entries[0].service, entries[0].output_name) == ("image", "a.png")
    assert entries[0].task_id == "j.0.e0" and entries[0].output_blob == "out/j/0/o/0"
    assert entries[1].error_message == "symbolic link not extracted"
    assert "wav" in entries[2].error_message and "png" in entries[2].error_message
    assert entries[3].error_message == "archives inside archives are not converted"
    shown = record.job.files[0].entries
    assert [(e.name, e.status) for e in shown] == [(e.name, e.status) for e in entries]
    assert record.job.files[0].progress == 10 + 80 * 3 // 4
    assert record.job.status == jobs_pb2.JOB_STATUS_PROCESSING


def test_members_convert_then_the_archive_is_packed_and_completes() -> None:
    record = archive_job()
    state.apply_result(record, unpacked(0, ("a.jpg", "jpg"), ("b.gif", "gif")))
    first = fanout.follow_ups(record, unpacked(0))
    assert [(service, spec.entry_index, spec.task_id) for service, spec in first] == [
        ("image", 0, "j.0.e0"),
        ("image", 1, "j.0.e1"),
    ]
    assert state.apply_result(record, of_entry(0, 0, SUCCEEDED))
    assert fanout.follow_ups(record, of_entry(0, 0, SUCCEEDED))[0][1].entry_index == 1
    assert state.apply_result(record, of_entry(0, 1, FAILED, error_message="bad gif"))
    task = record.tasks[0]
    assert (task.stage, task.task_id, task.pack_task_id) == (PACK, "j.0", "j.0.pack")
    [(service, pack)] = fanout.follow_ups(record, of_entry(0, 1, FAILED))
    assert (service, pack.kind, pack.task_id, pack.entry_index) == (
        "archive",
        TaskKind.PACK,
        "j.0.pack",
        None,
    )
    assert [(i.name, i.blob) for i in pack.inputs] == [("a.png", "out/j/0/o/0")]
    report = json.loads(pack.report)["entries"]
    assert [(e["name"], e["status"], e["reason"]) for e in report] == [
        ("a.jpg", "converted", None),
        ("b.gif", "skipped", "bad gif"),
    ]
    assert state.apply_result(record, packed(0))
    item = record.job.files[0]
    assert (item.status, item.final_size, item.output_format) == (COMPLETED, 99, "zip")
    assert record.job.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert fanout.follow_ups(record, packed(0)) == []


def test_an_archive_with_nothing_convertible_fails_without_a_pack() -> None:
    record = archive_job()
    result = unpacked(0, ("song.wav", "wav"))
    assert state.apply_result(record, result)
    item = record.job.files[0]
    assert item.status == FILE_FAILED and item.error_code == "UNSUPPORTED_PAIR"
    assert "png" in item.error_message
    assert record.job.status == jobs_pb2.JOB_STATUS_FAILED
    assert fanout.follow_ups(record, result) == []


def test_an_empty_archive_fails_without_a_pack() -> None:
    record = archive_job()
    assert state.apply_result(record, unpacked(0))
    assert record.job.files[0].status == FILE_FAILED
    assert record.tasks[0].stage == ENTRIES


def test_the_job_zip_starts_after_the_last_file_and_finishes_the_job() -> None:
    record = state_pb2.JobRecord(job=jobs_pb2.Job(job_id="j", tenant="t", create_archive=True))
    for index in range(2):
        record.tasks.append(
            state_pb2.FileTask(index=index, task_id=f"j.{index}", output_blob=f"out/j/{index}")
        )
        record.job.files.append(
            jobs_pb2.FileResult(index=index, filename=f"p{index}.png", status=PENDING)
        )
    done = tasks_pb2.Result(task_id="j.0", file_index=0, kind=SUCCEEDED, output_format="webp")
    state.apply_result(record, done)
    assert not fanout.job_archive_pending(record) and fanout.follow_ups(record, done) == []
    failed = tasks_pb2.Result(task_id="j.1", file_index=1, kind=FAILED, error_message="bad")
    state.apply_result(record, failed)
    assert record.archive_task_id == "j.archive"
    assert record.job.status == jobs_pb2.JOB_STATUS_PROCESSING and record.job.progress == 99
    [(service, spec)] = fanout.follow_ups(record, failed)
    assert (service, spec.job_archive, spec.output_blob) == ("archive", True, "out/j/archive")
    assert [(i.name, i.blob) for i in spec.inputs] == [("p0.webp", "out/j/0")]
    stale = tasks_pb2.Result(task_id="j.other", job_archive=True, kind=SUCCEEDED)
    assert not state.apply_result(record, stale)
    zipped = tasks_pb2.Result(task_id="j.archive", job_archive=True, kind=SUCCEEDED, output_size=5)
    assert state.apply_result(record, zipped)
    assert (record.job.archive.status, record.job.archive.size) == (COMPLETED, 5)
    assert record.job.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert not state.apply_result(record, zipped)


def test_no_job_zip_when_every_file_failed() -> None:
    record = archive_job(create_archive=True)
    state.apply_result(record, tasks_pb2.Result(task_id="j.0", file_index=0, kind=FAILED))
    assert not record.archive_task_id
    assert record.job.status == jobs_pb2.JOB_STATUS_FAILED


def test_the_first_task_of_a_file_says_what_it_is() -> None:
    record = archive_job()
    spec = specs.file_spec(record, record.tasks[0])
    assert (spec.kind, spec.entry_index, spec.job_archive) == (TaskKind.UNPACK, None, False)
    round_trip = type(spec).from_proto(spec.to_proto())
    assert round_trip == spec
    state.apply_result(record, unpacked(0, ("a.jpg", "jpg")))
    _, entry = specs.entry_spec(record, record.tasks[0], 0)
    assert type(entry).from_proto(entry.to_proto()).entry_index == 0


def test_members_with_the_same_output_name_are_named_and_reported_as_stored() -> None:
    record = archive_job()
    state.apply_result(record, unpacked(0, ("hopper.jpg", "jpg"), ("hopper.gif", "gif")))
    outputs = [e.output_name for e in record.job.files[0].entries]
    assert outputs == ["hopper.png", "hopper (2).png"]
    state.apply_result(record, of_entry(0, 0, SUCCEEDED))
    state.apply_result(record, of_entry(0, 1, SUCCEEDED))
    spec = specs.pack_spec(record, record.tasks[0])
    assert [item.name for item in spec.inputs] == outputs
    assert [e["output"] for e in json.loads(spec.report)["entries"]] == outputs
