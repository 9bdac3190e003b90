"""Which requests the Convert RPC runs inline: one plain conversion of one uploaded file, or a
media tool's run over one file without a second one."""

from __future__ import annotations

import pytest

from mesh.jobs.v1 import jobs_pb2
from services.orchestrator.inline import takes


def plain(**fields: object) -> jobs_pb2.CreateJobRequest:
    request = jobs_pb2.CreateJobRequest(
        tenant="acme", files=[jobs_pb2.FileSpec(options=jobs_pb2.FileOptions(format="webp"))]
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


@pytest.mark.parametrize(
    "job_type",
    [
        jobs_pb2.JOB_TYPE_UNSPECIFIED,
        jobs_pb2.JOB_TYPE_CONVERT,
        jobs_pb2.JOB_TYPE_COMPRESS,
        jobs_pb2.JOB_TYPE_TOOL,
    ],
)
def test_one_plain_conversion_is_taken(job_type: int) -> None:
    assert takes(plain(job_type=job_type))


def test_everything_else_is_a_job() -> None:
    assert not takes(plain(job_type=jobs_pb2.JOB_TYPE_TRANSFER))
    assert not takes(plain(request_id="retry-me"))
    assert not takes(plain(callback_url="https://example.com/hook"))
    assert not takes(plain(create_archive=True))
    two = plain()
    two.files.add()
    assert not takes(two)
    fetched = plain()
    fetched.files[0].source_url = "https://example.com/a.jpg"
    assert not takes(fetched)
    with_extra = plain()
    with_extra.extra_file.blob_id = "logo"
    assert not takes(with_extra)
    assert not takes(jobs_pb2.CreateJobRequest(tenant="acme"))


def test_a_tool_with_a_second_file_or_several_files_is_a_job() -> None:
    logo = plain(job_type=jobs_pb2.JOB_TYPE_TOOL)
    logo.extra_file.blob_id = "logo"
    assert not takes(logo)
    pages = plain(job_type=jobs_pb2.JOB_TYPE_TOOL)
    pages.files.add()
    assert not takes(pages)
