"""`POST /api/transfer`: a file fetched from a `sourceUrl` into convertmesh's storage, by the
orchestrator (the gateway never fetches), through the SSRF guard and the upload limits.

The JSON body (ours where Convertly is silent): `sourceUrl` (required), `destination`
(`storage`, the default, answers the finished job with its signed download links; `download`
answers the bytes themselves within the sync budget), `extract` (unpack a zip/tgz/... with the
archive service's limits: its members become the job's files) and `async` (alias `background`:
202 with the job, whose result is the stored file). `cloudSource` (Google Drive, S3, Dropbox)
is not offered: 501.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mesh import jobjson
from mesh.errors import MeshError, Reason
from mesh.fields import BadValueError, FieldErrors, flag, one_of
from mesh.jobs.v1 import jobs_pb2
from services.gateway import auth, submission, sync
from services.gateway.forms import (
    CLOUD_SOURCE,
    SOURCE_URL,
    SourceUrl,
    file_spec,
    not_offered_cloud_source,
    url_field,
)
from services.gateway.multipart import ParsedForm, json_object
from services.gateway.settings import Settings
from services.gateway.toolforms import ASYNC, BACKGROUND
from services.gateway.uploads import UploadedFile

MAX_BODY_BYTES = 64 * 1024
DESTINATIONS = ("storage", "download")
FIELDS = frozenset({SOURCE_URL, "destination", "extract", ASYNC, BACKGROUND, CLOUD_SOURCE})
ASYNC_HINT = "add async=true to transfer as a job"


@dataclass(frozen=True)
class TransferForm:
    source: SourceUrl
    destination: str
    extract: bool
    background: bool
    warnings: tuple[str, ...] = ()

    @property
    def uploads(self) -> tuple[UploadedFile, ...]:
        return ()

    def job_request(self) -> jobs_pb2.CreateJobRequest:
        return jobs_pb2.CreateJobRequest(
            job_type=jobs_pb2.JOB_TYPE_TRANSFER,
            files=[file_spec(self.source)],
            extract=self.extract,
        )


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise MeshError(
            Reason.INVALID_FIELD,
            "Send the transfer as a JSON object (Content-Type: application/json).",
            fields={"Content-Type": "must be application/json"},
        )
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_BODY_BYTES:
            raise MeshError(
                Reason.TOO_LARGE,
                f"The request body is larger than {MAX_BODY_BYTES} bytes.",
                limit="maxBodyBytes",
                max=MAX_BODY_BYTES,
            )
    return json_object(raw)


def parse_transfer(body: dict[str, Any]) -> TransferForm:
    """The transfer's fields, every bad one in one 400; cloudSource is a 501."""
    if body.get(CLOUD_SOURCE) not in (None, ""):
        raise not_offered_cloud_source()
    errors = FieldErrors()
    # The fields as a form would carry them, so the URL is checked by the forms' own rule.
    given = body.get(SOURCE_URL)
    as_form = ParsedForm({SOURCE_URL: [given]} if isinstance(given, str) else {}, ())
    if given is not None and not isinstance(given, str):
        errors.add(SOURCE_URL, "must be a string")
    url = url_field(as_form, SOURCE_URL, errors)
    if not url and SOURCE_URL not in errors.fields:
        errors.add(SOURCE_URL, "is required: the http or https URL of the file to transfer")

    def value(name: str, rule: Any, default: Any) -> Any:
        raw = body.get(name)
        if raw is None or raw == "":
            return default
        try:
            return rule(raw)
        except BadValueError as problem:
            errors.add(name, str(problem))
            return default

    destination = value("destination", one_of(*DESTINATIONS), "storage")
    extract = value("extract", flag, False)
    background = value(ASYNC, flag, False) | value(BACKGROUND, flag, False)
    errors.raise_if_any()
    warnings = tuple(
        f"The field '{name}' is not read by POST /api/transfer and was ignored."
        for name in body
        if name not in FIELDS
    )
    return TransferForm(SourceUrl(url), destination, extract, background, warnings)


async def transfer(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    tenant = auth.tenant_for(request, settings.api_keys)
    form = parse_transfer(await _body(request))
    read = submission.Read(tenant, form)
    if form.background:
        submitted = await submission.create(request, read, settings.max_file_bytes)
        job = submitted.job
        answer: dict[str, Any] = {
            "jobId": job.job_id,
            "status": jobjson.public_job_status(job.status),
            "tool": "transfer",
        }
        if form.warnings:
            answer["warnings"] = list(form.warnings)
        return JSONResponse(answer, status_code=202, headers=submitted.headers)
    until = sync.deadline(settings)
    downloading = form.destination == "download"
    # The bytes come back inside this request: the sync budget bounds them.
    cap = settings.sync_max_bytes if downloading else settings.max_file_bytes
    try:
        submitted = await submission.create(
            request, read, cap, fetch_seconds=sync.seconds_left(until)
        )
    except MeshError as error:
        raise (sync.over_budget(error, cap, ASYNC_HINT) if downloading else error) from None
    if not downloading:
        shape = sync.Shape.JOB
    else:
        shape = sync.Shape.FILES if form.extract else sync.Shape.BYTES
    return await sync.answer(request, submitted, until, ASYNC_HINT, shape)
