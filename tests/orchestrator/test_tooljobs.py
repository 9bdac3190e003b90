"""Tool jobs and transfers as records: routed by family to the worker that runs the tool,
parameters parsed with every default, the TOOL task carrying every source and the logo, the
output named after what the worker wrote; an extracting transfer's members become its files."""

from __future__ import annotations

import pytest

from mesh.bus.tasks import TaskKind, ToolInput
from mesh.errors import MeshError, Reason
from mesh.formats import Family
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from mesh.tools.catalog import TOOLS
from services.image import tools as image_tools
from services.media import tools as media_tools
from services.orchestrator import state, tooljobs, toolrouting

RUN_BY = {"image": set(image_tools.TOOLS), "media": set(media_tools.TOOLS)}


def upload(fmt: str, family: Family, size: int = 100, name: str = "") -> state_pb2.UploadRecord:
    blob = jobs_pb2.BlobRef(
        blob_id=name or fmt, size=size, detected_format=fmt, family=family.value
    )
    return state_pb2.UploadRecord(tenant="t", blob=blob, filename=name or f"in.{fmt}")


def record(job_type: jobs_pb2.JobType.ValueType = jobs_pb2.JOB_TYPE_TOOL) -> state_pb2.JobRecord:
    return state_pb2.JobRecord(job=jobs_pb2.Job(job_id="j", tenant="t", job_type=job_type))


def tool_request(
    tool: str, blobs: list[str], extra: str | None = None, **params: str
) -> jobs_pb2.CreateJobRequest:
    request = jobs_pb2.CreateJobRequest(
        job_type=jobs_pb2.JOB_TYPE_TOOL,
        tool=jobs_pb2.ToolSpec(tool=tool, params=params),
        files=[jobs_pb2.FileSpec(blob_id=blob) for blob in blobs],
    )
    if extra is not None:
        request.extra_file.blob_id = extra
    return request


def test_every_family_a_tool_takes_is_owned_by_a_worker_that_runs_the_tool() -> None:
    for tool in TOOLS.values():
        for family in tool.families:
            service = toolrouting.TOOL_SERVICES[family]
            assert tool.name in RUN_BY[service], (tool.name, family)


def test_a_tool_job_is_routed_by_family_with_every_default() -> None:
    made = record()
    tooljobs.build_tool(
        made, tool_request("thumbnail", ["v"], width="64"), [upload("mp4", Family.VIDEO)], None
    )
    (task,), (item,) = made.tasks, made.job.files
    assert task.service == "media" and task.source_blob == "src/v"
    assert dict(made.job.tool.params) == {
        "format": "jpg", "width": "64", "height": "512", "fit": "cover", "quality": "82",
        "timestamp": "1.0",
    }  # fmt: skip
    assert (item.output_filename, item.output_format, item.status) == (
        "in.jpg",
        "jpg",
        jobs_pb2.FILE_STATUS_PENDING,
    )
    still = record()
    tooljobs.build_tool(still, tool_request("thumbnail", ["p"]), [upload("pdf", Family.PDF)], None)
    assert still.tasks[0].service == "image"


def test_the_tool_task_carries_every_source_and_the_logo() -> None:
    made = record()
    sources = [upload("png", Family.IMAGE, 10, "a"), upload("jpg", Family.IMAGE, 20, "b")]
    tooljobs.build_tool(made, tool_request("image-to-pdf", ["a", "b"]), sources, None)
    spec = tooljobs.task_spec(made, made.tasks[0])
    assert spec.kind is TaskKind.TOOL and spec.tool == "image-to-pdf"
    assert spec.sources == (ToolInput("src/a", "png"), ToolInput("src/b", "jpg"))
    assert made.job.files[0].original_size == 30 and made.job.files[0].output_filename == "a.pdf"
    again = type(spec).from_proto(spec.to_proto())
    assert again == spec

    marked = record()
    tooljobs.build_tool(
        marked,
        tool_request("watermark", ["v"], extra="logo", opacity="0.5"),
        [upload("mp4", Family.VIDEO)],
        upload("png", Family.IMAGE, name="logo"),
    )
    spec = tooljobs.task_spec(marked, marked.tasks[0])
    assert spec.extra == ToolInput("src/logo", "png") and spec.params["opacity"] == "0.5"


@pytest.mark.parametrize(
    ("tool", "sources", "extra", "reason"),
    [
        ("gif", [upload("mp3", Family.AUDIO)], None, Reason.UNSUPPORTED_PAIR),
        ("pdf-preview", [upload("png", Family.IMAGE)], None, Reason.UNSUPPORTED_PAIR),
        ("trim", [upload("mp4", Family.VIDEO)] * 2, None, Reason.INVALID_FIELD),
        ("watermark", [upload("png", Family.IMAGE)], None, Reason.INVALID_FIELD),
        (
            "watermark",
            [upload("png", Family.IMAGE)],
            upload("mp4", Family.VIDEO),
            Reason.UNSUPPORTED_PAIR,
        ),
        ("trim", [upload("mp4", Family.VIDEO)], upload("png", Family.IMAGE), Reason.INVALID_FIELD),
        ("thumbnail", [upload("", Family.UNKNOWN)], None, Reason.UNSUPPORTED_PAIR),
        ("sharpen", [upload("png", Family.IMAGE)], None, Reason.NOT_FOUND),
    ],
)
def test_what_a_tool_cannot_run_is_refused_at_creation(
    tool: str,
    sources: list[state_pb2.UploadRecord],
    extra: state_pb2.UploadRecord | None,
    reason: Reason,
) -> None:
    request = tool_request(tool, [s.blob.blob_id for s in sources], "x" if extra else None)
    with pytest.raises(MeshError) as caught:
        tooljobs.build_tool(record(), request, sources, extra)
    assert caught.value.reason is reason


def test_bad_parameters_are_one_error_naming_each() -> None:
    request = tool_request("gif", ["v"], fps="0", width="x", duration="100")
    with pytest.raises(MeshError) as caught:
        tooljobs.build_tool(record(), request, [upload("mp4", Family.VIDEO)], None)
    assert set(caught.value.detail["fields"]) == {"fps", "width", "duration"}


def test_inspect_names_the_upload_and_the_output_is_named_after_what_ran() -> None:
    made = record()
    tooljobs.build_tool(
        made,
        tool_request("inspect", ["v"]),
        [upload("mkv", Family.VIDEO, name="dir/clip.mkv")],
        None,
    )
    assert made.job.tool.params["filename"] == "clip.mkv"
    assert made.job.files[0].output_filename == "clip.json"
    trimmed = record()
    tooljobs.build_tool(trimmed, tool_request("trim", ["v"]), [upload("mkv", Family.VIDEO)], None)
    result = tasks_pb2.Result(
        task_id=trimmed.tasks[0].task_id,
        kind=tasks_pb2.RESULT_KIND_SUCCEEDED,
        output_format="mp4",
        mime_type="video/mp4",
        output_size=5,
    )
    assert state.apply_result(trimmed, result)
    assert trimmed.job.files[0].output_filename == "in.mp4"
    assert trimmed.job.status == jobs_pb2.JOB_STATUS_COMPLETED


def test_a_transfer_is_complete_when_created() -> None:
    made = record(jobs_pb2.JOB_TYPE_TRANSFER)
    request = jobs_pb2.CreateJobRequest(files=[jobs_pb2.FileSpec(blob_id="b")])
    tooljobs.build_transfer(made, request, [upload("png", Family.IMAGE, 42, "photo.png")])
    state.derive(made)
    (item,), (task,) = made.job.files, made.tasks
    assert made.job.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert (item.final_size, item.mime_type, item.output_filename) == (42, "image/png", "photo.png")
    assert task.output_blob == task.source_blob == "src/b" and not task.service


def extracting() -> state_pb2.JobRecord:
    made = record(jobs_pb2.JOB_TYPE_TRANSFER)
    request = jobs_pb2.CreateJobRequest(files=[jobs_pb2.FileSpec(blob_id="z")], extract=True)
    tooljobs.build_transfer(made, request, [upload("zip", Family.ARCHIVE, 500, "bundle.zip")])
    return made


def test_an_extracting_transfer_makes_the_members_its_files() -> None:
    made = extracting()
    assert made.tasks[0].service == "archive" and made.tasks[0].stage == state_pb2.FILE_STAGE_UNPACK
    result = tasks_pb2.Result(
        task_id=made.tasks[0].task_id,
        kind=tasks_pb2.RESULT_KIND_SUCCEEDED,
        entries=[
            tasks_pb2.UnpackedEntry(
                name="a/x.png", blob="out/j/0/e/0", size=7, detected_format="png"
            ),
            tasks_pb2.UnpackedEntry(name="../evil", size=3, skipped_reason="unsafe path"),
        ],
    )
    assert state.apply_result(made, result)
    first, second = made.job.files
    assert (first.filename, first.status, first.mime_type) == (
        "a/x.png",
        jobs_pb2.FILE_STATUS_COMPLETED,
        "image/png",
    )
    assert made.tasks[0].output_blob == "out/j/0/e/0"
    assert second.status == jobs_pb2.FILE_STATUS_FAILED and second.error_message == "unsafe path"
    assert made.job.status == jobs_pb2.JOB_STATUS_COMPLETED and made.job.failed_files == 1
    assert not state.apply_result(made, result)  # a redelivery changes nothing


def test_an_empty_or_refused_archive_fails_the_transfer() -> None:
    made = extracting()
    empty = tasks_pb2.Result(task_id=made.tasks[0].task_id, kind=tasks_pb2.RESULT_KIND_SUCCEEDED)
    assert state.apply_result(made, empty)
    assert made.job.status == jobs_pb2.JOB_STATUS_FAILED
    with pytest.raises(MeshError) as caught:
        tooljobs.build_transfer(
            record(jobs_pb2.JOB_TYPE_TRANSFER),
            jobs_pb2.CreateJobRequest(files=[jobs_pb2.FileSpec(blob_id="p")], extract=True),
            [upload("png", Family.IMAGE)],
        )
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR
