"""Creating jobs through the JobService: output names, compress tasks, idempotent replays."""

from __future__ import annotations

from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import state
from tests.orchestrator.conftest import Orchestrator, upload

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


def _spec(blob: str, filename: str, fmt: str = "") -> jobs_pb2.FileSpec:
    return jobs_pb2.FileSpec(
        blob_id=blob, filename=filename, options=jobs_pb2.FileOptions(format=fmt)
    )


async def test_files_are_named_for_their_output_and_unique_in_the_job(
    orchestrator: Orchestrator,
) -> None:
    stub = orchestrator.stub
    specs = [
        _spec(await upload(stub, "naming", PNG), "photos/hopper.png", "webp"),
        _spec(await upload(stub, "naming", JPEG), "hopper.jpg", "webp"),
        _spec(await upload(stub, "naming", PNG), "notes.txt.png", "gz"),
    ]
    created = await stub.CreateJob(jobs_pb2.CreateJobRequest(tenant="naming", files=specs))
    files = created.job.files
    assert [f.filename for f in files] == ["photos/hopper.png", "hopper.jpg", "notes.txt.png"]
    assert [f.output_filename for f in files] == [
        "hopper.webp",
        "hopper (2).webp",
        "notes.txt.png.gz",
    ]
    assert not created.replayed


async def test_a_compress_keeping_the_format_reaches_the_worker_without_one(
    orchestrator: Orchestrator,
) -> None:
    stub = orchestrator.stub
    specs = [
        _spec(await upload(stub, "squeeze", JPEG), "a.jpg"),
        _spec(await upload(stub, "squeeze", PNG), "b.png", "webp"),
    ]
    created = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="squeeze", job_type=jobs_pb2.JOB_TYPE_COMPRESS, files=specs
        )
    )
    record, _ = await orchestrator.store.get("squeeze", created.job.job_id)
    assert [task.options.format for task in record.tasks] == ["", "webp"]
    assert [f.output_format for f in record.job.files] == ["jpg", "webp"]
    assert [f.output_filename for f in record.job.files] == ["a.jpg", "b.webp"]


async def test_a_replay_says_so_and_answers_with_the_first_job(
    orchestrator: Orchestrator,
) -> None:
    stub = orchestrator.stub

    async def create() -> jobs_pb2.CreateJobResponse:
        blob = await upload(stub, "again", PNG)
        request = jobs_pb2.CreateJobRequest(
            tenant="again", request_id="key-1", files=[_spec(blob, "a.png", "jpg")]
        )
        response: jobs_pb2.CreateJobResponse = await stub.CreateJob(request)
        return response

    first = await create()

    def started(record: state_pb2.JobRecord) -> bool:
        record.job.status = jobs_pb2.JOB_STATUS_PROCESSING
        record.job.updated_at.CopyFrom(state.now())
        return True

    await orchestrator.store.mutate("again", first.job.job_id, started)
    second = await create()
    assert (first.replayed, second.replayed) == (False, True)
    assert second.job.job_id == first.job.job_id
    assert first.job.status == jobs_pb2.JOB_STATUS_PENDING
    assert second.job.status == jobs_pb2.JOB_STATUS_PROCESSING
