"""The OpenAPI document: it describes exactly the routes the app serves, is valid OpenAPI 3.1,
states the values the form parsers really accept, and matches what the renderer produces."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from schemathesis.specs.openapi.definitions import OPENAPI_31

from mesh import jobjson as render
from mesh.errors import MeshError, Reason
from mesh.fields import BadValueError
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks, LinkSigner
from services.gateway import apischemas, openapi
from services.gateway.app import create_app
from services.gateway.file_options import OPTIONS
from services.gateway.settings import Settings

APP = create_app(Settings())
REGISTERED = openapi.registered_operations(APP.routes)
DOCUMENT = openapi.build_document()
METHODS = {"get", "post", "put", "patch", "delete"}
LINKS = DownloadLinks("http://gateway.test/", LinkSigner.ephemeral())


def documented(document: dict[str, Any]) -> set[apischemas.Operation]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def validator(name: str) -> jsonschema_rs.Validator:
    """A validator for one component schema, its $refs resolved inside the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def job_form() -> dict[str, Any]:
    body = DOCUMENT["paths"]["/api/jobs"]["post"]["requestBody"]
    properties: dict[str, Any] = body["content"]["multipart/form-data"]["schema"]["properties"]
    return properties


def test_every_registered_route_is_documented() -> None:
    missing = REGISTERED - documented(DOCUMENT)
    assert not missing, f"routes without documentation: {sorted(missing)}"


def test_every_documented_route_is_registered() -> None:
    extra = documented(DOCUMENT) - REGISTERED
    assert not extra, f"documented but not served: {sorted(extra)}"


def test_registered_operations_reads_path_formats_and_skips_head() -> None:
    assert ("GET", "/api/jobs/{job_id}/files/{index}") in REGISTERED
    assert not any(method == "HEAD" for method, _ in REGISTERED)


def test_document_is_valid_openapi_3_1() -> None:
    errors = [
        str(error) for error in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(DOCUMENT)
    ]
    assert not errors, errors[0]
    assert DOCUMENT["openapi"].startswith("3.1")
    assert DOCUMENT["servers"] == [{"url": "/"}]


@pytest.mark.parametrize("name", sorted(DOCUMENT["components"]["schemas"]))
def test_component_schemas_are_valid_json_schema(name: str) -> None:
    schema = DOCUMENT["components"]["schemas"][name]
    jsonschema_rs.meta.validate(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    )


def test_both_key_headers_are_security_schemes() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemes["apiKey"]["name"] == "x-api-key"
    assert DOCUMENT["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in DOCUMENT["paths"]["/api/jobs"]["post"]


def test_job_form_documents_every_option_in_single_and_per_file_form() -> None:
    properties = job_form()
    for option in OPTIONS:
        assert option.name in properties
        per_file = properties[option.array]
        assert per_file["contentMediaType"] == "application/json"
        assert per_file["contentSchema"]["type"] == "array"
    assert {"files", "jobType", "createArchive", "callbackUrl", "quality"} <= set(properties)


def test_sync_forms_document_their_own_option_sets() -> None:
    def fields(path: str) -> set[str]:
        body = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        return set(body["schema"]["properties"])

    assert "format" in fields("/api/convert")
    assert "quality" not in fields("/api/convert")
    assert {"quality", "targetBytes", "stripMetadataValues"} <= fields("/api/compress")
    assert not {"format", "resize", "jobType"} & fields("/api/compress")


def _accepted(parse: Any, value: object) -> bool:
    try:
        parse(value)
    except BadValueError:
        return False
    return True


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_documented_values_are_the_ones_the_parser_accepts(option: Any) -> None:
    schema = job_form()[option.name]
    if "enum" in schema:
        assert all(_accepted(option.parse, value) for value in schema["enum"])
        assert not _accepted(option.parse, "surely-not-a-value")
    elif schema["type"] == "integer":
        low, high = schema["minimum"], schema["maximum"]
        assert _accepted(option.parse, str(low)) and _accepted(option.parse, str(high))
        assert not _accepted(option.parse, str(low - 1))
        assert not _accepted(option.parse, str(high + 1))
    else:
        assert schema["type"] == "boolean"
        assert _accepted(option.parse, "true") and _accepted(option.parse, "false")
    if "default" in schema:
        assert _accepted(option.parse, str(schema["default"]).lower())


def test_defaults_come_from_the_options_dataclass() -> None:
    properties = job_form()
    assert properties["compression"]["default"] == 82
    assert properties["resize"]["default"] == "original"
    assert properties["autoOrient"]["default"] is True
    assert properties["mode"]["default"] == "quality"
    assert "default" not in properties["format"]


def test_every_reason_appears_with_its_status() -> None:
    responses = DOCUMENT["components"]["responses"]
    for reason in Reason:
        response = responses[f"E{reason.http_status}"]
        narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
        assert reason.value in narrowed["properties"]["code"]["enum"]
    assert "Retry-After" in responses["E503"]["headers"]


def _stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=5000)


def _job(status: jobs_pb2.JobStatus.ValueType, files: list[jobs_pb2.FileResult]) -> jobs_pb2.Job:
    job = jobs_pb2.Job(
        job_id="5a0c6f0e-8d1b-4c36-9e0f-2f1d7b9c1a11",
        job_type=jobs_pb2.JOB_TYPE_CONVERT,
        status=status,
        files=files,
        progress=100,
        created_at=_stamp(1_700_000_000),
        updated_at=_stamp(1_700_000_009),
    )
    if status in (jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED):
        job.completed_at.CopyFrom(_stamp(1_700_000_010))
    return job


COMPLETED_FILE = jobs_pb2.FileResult(
    index=0,
    filename="photo.jpg",
    status=jobs_pb2.FILE_STATUS_COMPLETED,
    progress=100,
    original_size=2000,
    final_size=1000,
    mime_type="image/jpeg",
    output_format="jpg",
    detected_format="png",
    applied_quality=82,
    width=1800,
    height=1200,
)
FAILED_FILE = jobs_pb2.FileResult(
    index=1,
    filename="broken.png",
    status=jobs_pb2.FILE_STATUS_FAILED,
    original_size=10,
    error_message="The input is damaged or cannot be decoded.",
    error_code="CORRUPT_INPUT",
)


@pytest.mark.parametrize(
    "job",
    [
        _job(jobs_pb2.JOB_STATUS_COMPLETED, [COMPLETED_FILE, FAILED_FILE]),
        _job(jobs_pb2.JOB_STATUS_FAILED, [FAILED_FILE]),
        _job(
            jobs_pb2.JOB_STATUS_PENDING,
            [jobs_pb2.FileResult(index=0, filename="a.gif", status=jobs_pb2.FILE_STATUS_PENDING)],
        ),
        _job(jobs_pb2.JOB_STATUS_CANCELLED, []),
    ],
    ids=["completed", "failed", "pending", "cancelled"],
)
def test_rendered_jobs_match_the_job_schema(job: jobs_pb2.Job) -> None:
    rendered = render.render_job(job, LINKS)
    errors = [str(error) for error in validator("Job").iter_errors(rendered)]
    assert not errors, errors


def _tool_job() -> jobs_pb2.Job:
    inspected = jobs_pb2.FileResult(
        index=0,
        filename="clip.mkv",
        output_filename="clip.json",
        status=jobs_pb2.FILE_STATUS_COMPLETED,
        original_size=2000,
        final_size=900,
        mime_type="application/json",
        output_format="json",
        detected_format="mkv",
    )
    job = _job(jobs_pb2.JOB_STATUS_COMPLETED, [inspected])
    job.job_type = jobs_pb2.JOB_TYPE_TOOL
    job.tool.tool = "inspect"
    return job


def test_tool_and_transfer_jobs_match_the_job_schema() -> None:
    rendered = render.render_job(_tool_job(), LINKS)
    assert (rendered["jobType"], rendered["tool"]) == ("tool", "inspect")
    assert not [str(error) for error in validator("Job").iter_errors(rendered)]
    transfer = _job(jobs_pb2.JOB_STATUS_COMPLETED, [COMPLETED_FILE])
    transfer.job_type = jobs_pb2.JOB_TYPE_TRANSFER
    assert validator("Job").is_valid(render.render_job(transfer, LINKS))


def test_job_schema_refuses_an_undocumented_field() -> None:
    rendered = render.render_job(_job(jobs_pb2.JOB_STATUS_COMPLETED, [COMPLETED_FILE]), LINKS)
    rendered["results"]["files"][0]["surprise"] = 1
    assert not validator("Job").is_valid(rendered)


async def test_document_is_served_without_a_key() -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


async def test_docs_page_lists_every_route_and_loads_nothing_from_outside() -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for path in DOCUMENT["paths"]:
        assert f"<code>{path}</code>" in page
    for code in (reason.value for reason in Reason):
        assert code in page
    assert "<script" not in page
    assert "<link" not in page
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page


@pytest.mark.parametrize(
    "error",
    [
        MeshError(Reason.INVALID_FIELD, "2 fields.", fields={"a": "is bad", "b": "is worse"}),
        MeshError(Reason.TOO_LARGE, "Too big.", limit="maxFileBytes", max=10),
        MeshError(Reason.LINK_EXPIRED),
    ],
)
def test_error_bodies_match_the_error_schema(error: MeshError) -> None:
    errors = [str(e) for e in validator("Error").iter_errors(error.to_http_body())]
    assert not errors, errors


def test_a_cancelled_job_is_documented_as_failed_and_flagged() -> None:
    rendered = render.render_job(_job(jobs_pb2.JOB_STATUS_CANCELLED, []), LINKS)
    assert (rendered["status"], rendered["cancelled"]) == ("failed", True)
    assert (
        "cancelled" not in DOCUMENT["components"]["schemas"]["Job"]["properties"]["status"]["enum"]
    )
    assert validator("Job").is_valid(rendered)


def test_created_and_sync_answers_with_warnings_match_their_schemas() -> None:
    created = {"jobId": "5a0c6f0e-8d1b-4c36-9e0f-2f1d7b9c1a11", "status": "pending"}
    assert validator("JobCreated").is_valid(created)
    assert validator("JobCreated").is_valid({**created, "warnings": ["The field 'x' ..."]})
    item = {
        "filename": "a.webp",
        "originalFilename": "a.jpg",
        "originalSize": 10,
        "finalSize": 8,
        "savedPercent": 20.0,
        "mimeType": "image/webp",
        "downloadUrl": "data:image/webp;base64,AAAA",
        "appliedQuality": 82,
        "keptOriginal": False,
    }
    failed = {
        "filename": "b.png",
        "originalFilename": "b.png",
        "originalSize": 3,
        "error": "The input is damaged.",
        "code": "CORRUPT_INPUT",
    }
    answer = {"files": [item, failed], "storage": {"saved": False}, "warnings": ["..."]}
    errors = [str(e) for e in validator("SyncResult").iter_errors(answer)]
    assert not errors, errors
