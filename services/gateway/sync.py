"""`POST /api/convert` and `POST /api/compress`: a job through the same mesh, waited for inside
the request (API.md "Synchronous endpoints").

The answer is Convertly's storage-free shape, each output as a `data:` URL; the JSON body is
streamed, base64 chunk by chunk, so no output is held whole in memory. With
`Accept: application/octet-stream` and one file, the bytes themselves. Past the size or time
budget the caller is told to use jobs (413 / 504).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mesh import jobjson
from mesh.errors import MeshError, Reason, reason_named
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks
from services.gateway import early, submission
from services.gateway.client import JobClient
from services.gateway.downloads import download_response
from services.gateway.forms import JobForm, parse_compress_form, parse_convert_form
from services.gateway.inline import Holder, StoredForm
from services.gateway.multipart import FormLimits, ParsedForm
from services.gateway.settings import Settings
from services.gateway.submission import JobSource
from services.gateway.uploads import Discard, Upload, discard_uploads

BASE64_BLOCK = 3 * 64 * 1024
# What each answered file shows (API.md "Synchronous endpoints"), from the job's file item.
_ITEM_KEYS = (
    "filename",
    "originalFilename",
    "originalSize",
    "finalSize",
    "savedPercent",
    "mimeType",
    "appliedQuality",
    "keptOriginal",
)


JOBS_HINT = "use POST /api/jobs"
F = TypeVar("F", bound=JobSource)


async def convert(request: Request) -> Response:
    return await _run(request, parse_convert_form, early.unknown_to_named_output)


async def compress(request: Request) -> Response:
    return await _run(request, parse_compress_form, early.unknown_in_own_format)


def deadline(settings: Settings) -> float:
    """When a synchronous answer is due (monotonic clock): the whole request, a sourceUrl's
    fetch included, shares one budget."""
    return time.monotonic() + settings.sync_timeout_seconds


def seconds_left(until: float) -> float:
    return max(until - time.monotonic(), 0.1)


def over_budget(error: MeshError, budget: int, hint: str) -> MeshError:
    """A TOO_LARGE error of a synchronous route, told in the words of its budget."""
    if error.reason is not Reason.TOO_LARGE:
        return error
    return MeshError(
        Reason.TOO_LARGE,
        f"Synchronous requests take at most {budget // (1024 * 1024)} MB; {hint} for larger files.",
        **error.detail,
    )


async def _run(
    request: Request, parse: Callable[[ParsedForm], JobForm], vet: early.Vet
) -> Response:
    """One small file goes to the orchestrator's Convert inline (no job stored); anything
    else, or what Convert hands back as `durable`, is a job as before."""
    settings: Settings = request.app.state.settings
    budget = settings.sync_max_bytes
    limits = FormLimits(max_files=settings.max_files, max_file_bytes=budget, max_body_bytes=budget)
    until = deadline(settings)
    holding = Holding(request, budget)
    try:
        read = await submission.read(request, parse, limits, vet=vet, store=holding)
        holder = holding.holder
        assert holder is not None  # the form's reader asked for the tenant's store
        answered = await inline(request, read, holder, until, hint=JOBS_HINT)
        if answered is not None:
            return answered
        submitted = await submission.create(
            request, await stored(read, holder), budget, seconds_left(until)
        )
    except MeshError as error:
        raise over_budget(error, budget, JOBS_HINT) from None
    return await answer(request, submitted, until, JOBS_HINT)


class Holding:
    """The store of a synchronous form: its first file held in memory while it is small
    (SYNC_INLINE_MAX_BYTES, and at most `budget`), every other file uploaded."""

    def __init__(self, request: Request, budget: int) -> None:
        settings: Settings = request.app.state.settings
        self._client: JobClient = request.app.state.client
        self._max_bytes = min(settings.sync_inline_max_bytes, budget)
        self.holder: Holder | None = None

    def __call__(self, tenant: str) -> tuple[Upload, Discard]:
        self.holder = Holder(self._client, tenant, self._max_bytes)
        return self.holder.upload, self.holder.discard


async def stored(read: submission.Read[F], holder: Holder) -> submission.Read[StoredForm[F]]:
    """The form with its held file uploaded, for the job path (what was uploaded is discarded
    when that fails)."""
    try:
        ids = await holder.store()
    except MeshError:
        await discard_uploads(read.form.uploads, holder.discard)
        raise
    return submission.Read(read.tenant, StoredForm(read.form, ids))


async def inline(
    request: Request,
    read: submission.Read[F],
    holder: Holder,
    until: float,
    *,
    hint: str,
    shape: Shape | None = None,
) -> Response | None:
    """The answer of Convert for a form of one held file (a conversion, or a media tool's run
    over it), or None: take the job path."""
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    uploads = read.form.uploads
    if len(uploads) != 1 or request.headers.get("idempotency-key"):
        return None
    held = holder.held.get(uploads[0].blob_id)
    if held is None:
        return None
    job = read.form.job_request()
    if len(job.files) != 1 or job.HasField("extra_file"):
        return None
    job.tenant = read.tenant
    job.files[0].blob_id = ""
    converting = jobs_pb2.ConvertRequest(
        job=job, source=held.data, filename=held.filename, content_type=held.content_type
    )
    # The orchestrator gives up (answering `durable`) a little before this deadline.
    answered = await client.convert(converting, seconds_left(until) + 1.0)
    if answered.durable:
        if until - time.monotonic() < 1.0:
            raise _timed_out(settings, hint, "")
        return None

    async def output(
        tenant: str, job_id: str, index: int
    ) -> tuple[jobs_pb2.OutputHeader, AsyncIterator[bytes]]:
        return answered.header, _once(answered.output)

    return await respond(request, answered.job, {}, read.form.warnings, output, shape=shape)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _timed_out(settings: Settings, hint: str, job_id: str) -> MeshError:
    detail = {"jobId": job_id} if job_id else {}
    return MeshError(
        Reason.TIMEOUT,
        f"The work did not finish within {settings.sync_timeout_seconds:g} s; {hint} for "
        "long work.",
        **detail,
    )


class Shape(enum.Enum):
    """How a synchronous answer shows the finished job."""

    FILES = "files"  # Convertly's {"files": [...]} with data: URLs
    BYTES = "bytes"  # the one output's bytes
    DOCUMENT = "document"  # the one output is the JSON answer itself (inspect)
    JOB = "job"  # the job as GET /api/jobs/{id} shows it, with signed download links


async def answer(
    request: Request,
    submitted: submission.Submitted[Any],
    until: float,
    hint: str,
    shape: Shape | None = None,
) -> Response:
    """Waits for the job until `until` and answers in `shape`; by default data: URLs, or the
    bytes with `Accept: application/octet-stream` and one file. Past the time budget: 504,
    pointing at `hint`."""
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    tenant, job = submitted.tenant, submitted.job
    try:
        final = await asyncio.wait_for(_terminal(client, tenant, job.job_id), seconds_left(until))
    except TimeoutError:
        raise _timed_out(settings, hint, job.job_id) from None
    return await respond(
        request, final, submitted.headers, submitted.form.warnings, client.read_output, shape=shape
    )


ReadOutput = Callable[
    [str, str, int], Awaitable[tuple[jobs_pb2.OutputHeader, AsyncIterator[bytes]]]
]


async def respond(
    request: Request,
    final: jobs_pb2.Job,
    headers: dict[str, str],
    warnings: tuple[str, ...],
    read_output: ReadOutput,
    *,
    shape: Shape | None = None,
) -> Response:
    """The answer for a finished job in `shape` (see `answer`), its outputs from
    `read_output`."""
    settings: Settings = request.app.state.settings
    completed = [f for f in final.files if f.status == jobs_pb2.FILE_STATUS_COMPLETED]
    if not completed:
        first = final.files[0]
        raise MeshError(reason_named(first.error_code), first.error_message, jobId=final.job_id)
    links = DownloadLinks(str(request.base_url), settings.links)
    if shape is None:
        accept = request.headers.get("accept", "")
        wants_bytes = "application/octet-stream" in accept and len(final.files) == 1
        shape = Shape.BYTES if wants_bytes else Shape.FILES
    if shape is Shape.JOB:
        return JSONResponse(jobjson.render_job(final, links), headers=headers)
    if shape is Shape.DOCUMENT:
        _, body = await read_output(final.tenant, final.job_id, completed[0].index)
        return StreamingResponse(body, media_type="application/json", headers=headers)
    if shape is Shape.BYTES and len(final.files) == 1:
        header, body = await read_output(final.tenant, final.job_id, 0)
        response = await download_response(request, header, body, ranged=False)
        response.headers.update(headers)
        return response
    return StreamingResponse(
        _json_body(read_output, final, links, warnings),
        media_type="application/json",
        headers=headers,
    )


async def _terminal(client: JobClient, tenant: str, job_id: str) -> jobs_pb2.Job:
    last: jobs_pb2.Job | None = None
    async for last in await client.watch_job(tenant, job_id):  # noqa: B007 - the last one
        pass
    if last is None:
        raise MeshError(Reason.INTERNAL)
    return last


async def _json_body(
    read_output: ReadOutput, job: jobs_pb2.Job, links: DownloadLinks, warnings: tuple[str, ...]
) -> AsyncIterator[bytes]:
    yield b'{"files": ['
    for number, item in enumerate(job.files):
        if number:
            yield b", "
        described = jobjson.render_file(job, item, links)
        if item.status != jobs_pb2.FILE_STATUS_COMPLETED:
            failed: dict[str, Any] = {
                key: described[key] for key in ("filename", "originalFilename", "originalSize")
            }
            failed |= {"error": described["errorMessage"], "code": described["errorCode"]}
            yield json.dumps(failed).encode()
            continue
        head = {key: described[key] for key in _ITEM_KEYS}
        opening = json.dumps(head)[:-1] + ', "downloadUrl": "data:'
        yield (opening + f"{item.mime_type};base64,").encode()
        _, body = await read_output(job.tenant, job.job_id, item.index)
        async for encoded in _base64(body):
            yield encoded
        yield b'"}'
    tail: dict[str, Any] = {"storage": {"saved": False}}
    if warnings:
        tail["warnings"] = list(warnings)
    yield b"], " + json.dumps(tail)[1:].encode()


async def _base64(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Base64 of a byte stream, in pieces that concatenate to the encoding of the whole."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        whole = len(pending) - len(pending) % 3
        if whole >= BASE64_BLOCK:
            yield base64.b64encode(pending[:whole])
            pending = pending[whole:]
    yield base64.b64encode(pending)
