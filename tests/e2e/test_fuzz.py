"""The live gateway against its own /openapi.json: real jobs validate against the documented
schemas, and schemathesis-generated requests (valid and invalid) never get a 5xx or an answer
outside the documented statuses, media types, headers and bodies."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from launcher.mesh import LocalMesh
from services.gateway import openapi
from services.gateway.app import create_app
from services.gateway.settings import Settings
from tests.e2e.conftest import KEYS, create_job, wait_for_job

AUTH = {"Authorization": f"Bearer {KEYS['acme']}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation and phase; the whole file must stay well inside a minute on two shared cores.
MAX_EXAMPLES = 12


# Built in-process from the same source tree the mesh runs; a test below checks that the served
# document is this one. (schemathesis's fixture-based loader does not work on pytest 9.)
DOCUMENT = openapi.build_document(openapi.registered_operations(create_app(Settings()).routes))
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {"request-timeout": 20, "generation": {"max-examples": MAX_EXAMPLES}}
    ),
).exclude(func=lambda ctx: bool(ctx.operation.definition.raw.get("x-planned")))


def _call(mesh: LocalMesh, method: str, path: str, **parts: Any) -> Any:
    case = schema[path][method].Case(**parts)
    return case.call_and_validate(base_url=mesh.http_url, headers=AUTH, checks=CHECKS)


async def test_real_jobs_conform_to_the_document(http: httpx.AsyncClient, mesh: LocalMesh) -> None:
    mixed = await create_job(http, ["pillow/hopper.png", "pillow/broken.png"], {"format": "webp"})
    failed = await create_job(http, ["pillow/broken.png"], {"format": "png"})
    assert mixed.status_code == failed.status_code == 200, mixed.text
    job = await wait_for_job(http, mixed.json()["jobId"])
    await wait_for_job(http, failed.json()["jobId"])
    assert [item["status"] for item in job["results"]["files"]] == ["completed", "failed"]

    for job_id in (mixed.json()["jobId"], failed.json()["jobId"]):
        response = _call(mesh, "GET", "/api/jobs/{job_id}", path_parameters={"job_id": job_id})
        assert response.status_code == 200
    download = _call(
        mesh,
        "GET",
        "/api/jobs/{job_id}/files/{index}",
        path_parameters={"job_id": job["jobId"], "index": 0},
    )
    assert download.headers["content-type"] == ["image/webp"]
    listing = _call(mesh, "GET", "/api/jobs", query={"limit": 2})
    assert len(listing.json()["jobs"]) == 2
    cancel = _call(mesh, "DELETE", "/api/jobs/{job_id}", path_parameters={"job_id": job["jobId"]})
    assert cancel.status_code == 409


async def test_the_served_document_is_the_one_fuzzed(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


async def test_error_answers_conform_to_the_document(mesh: LocalMesh) -> None:
    unknown = _call(mesh, "GET", "/api/jobs/{job_id}", path_parameters={"job_id": "nope"})
    assert unknown.json()["code"] == "NOT_FOUND"
    keyless = schema["/api/jobs"]["GET"].Case(headers={"Authorization": "Bearer wrong"})
    response = keyless.call(base_url=mesh.http_url)
    schema["/api/jobs"]["GET"].validate_response(response)
    assert response.status_code == 401


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_generated_requests_get_documented_answers_and_no_5xx(
    mesh: LocalMesh, case: schemathesis.Case[Any]
) -> None:
    case.call_and_validate(base_url=mesh.http_url, headers=AUTH, checks=CHECKS)
