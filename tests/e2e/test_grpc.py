"""An internal caller does a whole job with gRPC alone: upload, create, watch, download."""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from launcher.mesh import LocalMesh
from mesh.errors import Reason, from_grpc_error
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.corpus import CORPUS


@pytest.fixture
async def stub(mesh: LocalMesh) -> AsyncIterator[jobs_pb2_grpc.JobServiceStub]:
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel)


async def upload(stub: jobs_pb2_grpc.JobServiceStub, data: bytes, name: str) -> jobs_pb2.BlobRef:
    async def requests() -> AsyncIterator[jobs_pb2.UploadBlobRequest]:
        yield jobs_pb2.UploadBlobRequest(header=jobs_pb2.BlobHeader(tenant="acme", filename=name))
        for start in range(0, len(data), 65536):
            yield jobs_pb2.UploadBlobRequest(chunk=data[start : start + 65536])

    response: jobs_pb2.UploadBlobResponse = await stub.UploadBlob(requests())
    return response.blob


async def test_whole_job_over_grpc(stub: jobs_pb2_grpc.JobServiceStub) -> None:
    data = (CORPUS / "exif-orientation-examples/Portrait_8.jpg").read_bytes()
    blob = await upload(stub, data, "Portrait_8.jpg")
    assert (blob.size, blob.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (blob.detected_format, blob.family) == ("jpg", "image")

    created = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="acme",
            job_type=jobs_pb2.JOB_TYPE_CONVERT,
            files=[
                jobs_pb2.FileSpec(
                    blob_id=blob.blob_id,
                    filename="Portrait_8.jpg",
                    options=jobs_pb2.FileOptions(
                        format="png", resize="email", compression=82, auto_orient=True
                    ),
                )
            ],
        )
    )
    seen = [
        update.status
        async for update in stub.WatchJob(
            jobs_pb2.WatchJobRequest(tenant="acme", job_id=created.job.job_id)
        )
    ]
    assert seen[-1] == jobs_pb2.JOB_STATUS_COMPLETED
    assert jobs_pb2.JOB_STATUS_COMPLETED not in seen[:-1]

    parts = [
        part
        async for part in stub.ReadOutput(
            jobs_pb2.ReadOutputRequest(tenant="acme", job_id=created.job.job_id, index=0)
        )
    ]
    header = parts[0].header
    body = b"".join(p.chunk for p in parts[1:])
    assert header.mime_type == "image/png" and header.filename == "Portrait_8.png"
    assert header.size == len(body) and header.sha256 == hashlib.sha256(body).hexdigest()
    image = Image.open(io.BytesIO(body))
    assert image.size == (600, 900)  # upright portrait, fit inside 600 px wide


async def test_errors_carry_their_reason_over_grpc(stub: jobs_pb2_grpc.JobServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetJob(jobs_pb2.GetJobRequest(tenant="acme", job_id="missing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert from_grpc_error(caught.value).reason is Reason.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateJob(
            jobs_pb2.CreateJobRequest(
                tenant="globex",  # the blob below belongs to acme
                files=[jobs_pb2.FileSpec(blob_id=(await upload(stub, b"x" * 10, "x")).blob_id)],
            )
        )
    assert from_grpc_error(caught.value).reason is Reason.NOT_FOUND


async def test_health_and_reflection_are_served(mesh: LocalMesh) -> None:
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(
            health_pb2.HealthCheckRequest(service="mesh.jobs.v1.JobService")
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for answer in reflection.ServerReflectionInfo(ask()):
            names |= {s.name for s in answer.list_services_response.service}
        assert "mesh.jobs.v1.JobService" in names


def _pdf_pages(body: bytes) -> int:
    """The page count poppler's pdfinfo reads."""
    out = subprocess.run(["pdfinfo", "-"], input=body, capture_output=True, check=True)
    (line,) = [ln for ln in out.stdout.decode().splitlines() if ln.startswith("Pages:")]
    return int(line.split(":")[1])


async def _finished(stub: jobs_pb2_grpc.JobServiceStub, job_id: str) -> jobs_pb2.Job:
    last = jobs_pb2.Job()
    async for last in stub.WatchJob(jobs_pb2.WatchJobRequest(tenant="acme", job_id=job_id)):  # noqa: B007
        pass
    return last


async def _output(stub: jobs_pb2_grpc.JobServiceStub, job_id: str) -> tuple[str, bytes]:
    parts = [
        part
        async for part in stub.ReadOutput(
            jobs_pb2.ReadOutputRequest(tenant="acme", job_id=job_id, index=0)
        )
    ]
    return parts[0].header.filename, b"".join(p.chunk for p in parts[1:])


async def test_a_media_tool_over_grpc_alone(stub: jobs_pb2_grpc.JobServiceStub) -> None:
    picture = (CORPUS / "pillow/hopper.png").read_bytes()
    first = await upload(stub, picture, "a.png")
    second = await upload(stub, picture, "b.png")
    created = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="acme",
            job_type=jobs_pb2.JOB_TYPE_TOOL,
            tool=jobs_pb2.ToolSpec(tool="image-to-pdf", params={"pageSize": "letter"}),
            files=[
                jobs_pb2.FileSpec(blob_id=first.blob_id),
                jobs_pb2.FileSpec(blob_id=second.blob_id),
            ],
        )
    )
    # Every default is filled in: the job shows what ran.
    assert dict(created.job.tool.params) == {"pageSize": "letter"}
    job = await _finished(stub, created.job.job_id)
    assert job.status == jobs_pb2.JOB_STATUS_COMPLETED, job
    name, body = await _output(stub, job.job_id)
    assert name == "a.pdf" and _pdf_pages(body) == 2

    logo = await upload(stub, picture, "logo.png")
    marked = await stub.CreateJob(
        jobs_pb2.CreateJobRequest(
            tenant="acme",
            job_type=jobs_pb2.JOB_TYPE_TOOL,
            tool=jobs_pb2.ToolSpec(tool="watermark", params={"watermarkWidth": "32"}),
            files=[jobs_pb2.FileSpec(blob_id=first.blob_id, filename="photo.png")],
            extra_file=jobs_pb2.FileSpec(blob_id=logo.blob_id),
        )
    )
    assert marked.job.tool.params["position"] == "bottom-right"
    done = await _finished(stub, marked.job.job_id)
    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done
    name, body = await _output(stub, done.job_id)
    assert name == "photo.png" and Image.open(io.BytesIO(body)).size == (128, 128)


async def test_tool_errors_over_grpc_carry_their_reason(stub: jobs_pb2_grpc.JobServiceStub) -> None:
    sound = await upload(stub, (CORPUS / "go-mediainfo/sample.mp3").read_bytes(), "a.mp3")
    for tool, params, reason in [
        ("gif", {}, Reason.UNSUPPORTED_PAIR),
        ("trim", {"duration": "-3", "start": "x"}, Reason.INVALID_FIELD),
        ("sharpen", {}, Reason.NOT_FOUND),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            await stub.CreateJob(
                jobs_pb2.CreateJobRequest(
                    tenant="acme",
                    job_type=jobs_pb2.JOB_TYPE_TOOL,
                    tool=jobs_pb2.ToolSpec(tool=tool, params=params),
                    files=[jobs_pb2.FileSpec(blob_id=sound.blob_id)],
                )
            )
        error = from_grpc_error(caught.value)
        assert error.reason is reason, (tool, error)
        if reason is Reason.INVALID_FIELD:
            assert set(error.detail["fields"]) == {"duration", "start"}
