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
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mesh import jobjson
from mesh.errors import MeshError, Reason, reason_named
from mesh.jobs.v1 import jobs_pb2
from services.gateway import auth
from services.gateway.client import JobClient
from services.gateway.downloads import download_response
from services.gateway.forms import SyncForm, parse_compress_form, parse_convert_form
from services.gateway.multipart import FormLimits, ParsedForm, read_form
from services.gateway.settings import Settings

BASE64_BLOCK = 3 * 64 * 1024


async def convert(request: Request) -> Response:
    return await _run(request, parse_convert_form, jobs_pb2.JOB_TYPE_CONVERT)


async def compress(request: Request) -> Response:
    return await _run(request, parse_compress_form, jobs_pb2.JOB_TYPE_COMPRESS)


async def _run(
    request: Request,
    parse: Callable[[ParsedForm], SyncForm],
    job_type: jobs_pb2.JobType.ValueType,
) -> Response:
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    tenant = auth.tenant_for(request, settings.api_keys)

    async def upload(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> Any:
        return await client.upload(tenant, filename, content_type, chunks)

    async def discard(blob_id: str) -> None:
        await client.delete_blob(tenant, blob_id)

    budget = settings.sync_max_bytes
    limits = FormLimits(max_files=settings.max_files, max_file_bytes=budget, max_body_bytes=budget)
    try:
        form = await read_form(request, parse, upload, discard, limits)
    except MeshError as error:
        if error.reason is Reason.TOO_LARGE:
            raise MeshError(
                Reason.TOO_LARGE,
                f"Synchronous conversions take at most {budget // (1024 * 1024)} MB; "
                "use POST /api/jobs for larger files.",
                **error.detail,
            ) from None
        raise
    job = await client.create_job(
        jobs_pb2.CreateJobRequest(
            tenant=tenant,
            request_id=request.headers.get("idempotency-key", ""),
            job_type=job_type,
            files=[
                jobs_pb2.FileSpec(blob_id=f.blob_id, filename=f.filename, options=o.to_proto())
                for f, o in form.files
            ],
        )
    )
    try:
        final = await asyncio.wait_for(
            _terminal(client, tenant, job.job_id), settings.sync_timeout_seconds
        )
    except TimeoutError:
        raise MeshError(
            Reason.TIMEOUT,
            f"The conversion did not finish within {settings.sync_timeout_seconds:g} s; "
            "use POST /api/jobs for long conversions.",
            jobId=job.job_id,
        ) from None
    completed = [f for f in final.files if f.status == jobs_pb2.FILE_STATUS_COMPLETED]
    if not completed:
        first = final.files[0]
        raise MeshError(reason_named(first.error_code), first.error_message, jobId=job.job_id)
    accept = request.headers.get("accept", "")
    if "application/octet-stream" in accept and len(final.files) == 1:
        header, body = await client.read_output(tenant, job.job_id, 0)
        return await download_response(request, header, body, ranged=False)
    return StreamingResponse(_json_body(client, tenant, final), media_type="application/json")


async def _terminal(client: JobClient, tenant: str, job_id: str) -> jobs_pb2.Job:
    last: jobs_pb2.Job | None = None
    async for last in await client.watch_job(tenant, job_id):  # noqa: B007 - the last one
        pass
    if last is None:
        raise MeshError(Reason.INTERNAL)
    return last


async def _json_body(client: JobClient, tenant: str, job: jobs_pb2.Job) -> AsyncIterator[bytes]:
    yield b'{"files": ['
    for number, item in enumerate(job.files):
        if number:
            yield b", "
        if item.status != jobs_pb2.FILE_STATUS_COMPLETED:
            yield json.dumps(
                {
                    "filename": item.filename,
                    "originalSize": item.original_size,
                    "error": item.error_message,
                    "code": item.error_code,
                }
            ).encode()
            continue
        described = jobjson.render_file(job, item, "")
        head = {
            key: described[key]
            for key in ("filename", "originalSize", "finalSize", "savedPercent", "mimeType")
        }
        head["appliedQuality"] = described["appliedQuality"]
        opening = json.dumps(head)[:-1] + ', "downloadUrl": "data:'
        yield (opening + f"{item.mime_type};base64,").encode()
        _, body = await client.read_output(tenant, job.job_id, item.index)
        async for encoded in _base64(body):
            yield encoded
        yield b'"}'
    yield b'], "storage": {"saved": false}}'


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
