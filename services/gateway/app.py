"""The public REST contract (API.md) on Starlette: each route is a thin call into the
orchestrator's JobService; errors become Convertly's `{"error", "code", "detail"}` bodies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mesh import jobjson
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from services.gateway import auth, docs, events, metrics, openapi, paths, sync, web
from services.gateway.client import JobClient
from services.gateway.downloads import download_response, requested_range
from services.gateway.forms import JobForm, parse_job_form
from services.gateway.multipart import FormLimits, read_form
from services.gateway.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
_JOB_TYPES = {"convert": jobs_pb2.JOB_TYPE_CONVERT, "compress": jobs_pb2.JOB_TYPE_COMPRESS}


def _client(request: Request) -> JobClient:
    client: JobClient = request.app.state.client
    return client


def _tenant(request: Request) -> str:
    return auth.tenant_for(request, request.app.state.settings.api_keys)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def create_job(request: Request) -> Response:
    tenant = _tenant(request)
    client = _client(request)
    settings: Settings = request.app.state.settings

    async def upload(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> Any:
        return await client.upload(tenant, filename, content_type, chunks)

    async def discard(blob_id: str) -> None:
        await client.delete_blob(tenant, blob_id)

    limits = FormLimits(
        max_files=settings.max_files,
        max_file_bytes=settings.max_file_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    form: JobForm = await read_form(request, parse_job_form, upload, discard, limits)
    job_request = jobs_pb2.CreateJobRequest(
        tenant=tenant,
        request_id=request.headers.get("idempotency-key", ""),
        job_type=_JOB_TYPES[form.job_type],
        create_archive=form.create_archive,
        callback_url=form.callback_url,
        callback_secret=form.callback_secret,
        files=[
            jobs_pb2.FileSpec(
                blob_id=uploaded.blob_id, filename=uploaded.filename, options=options.to_proto()
            )
            for uploaded, options in form.files
        ],
    )
    try:
        job = await client.create_job(job_request)
    except MeshError:
        for uploaded, _ in form.files:
            await client.delete_blob(tenant, uploaded.blob_id)
        raise
    return JSONResponse({"jobId": job.job_id, "status": jobjson.job_status(job.status)})


async def get_job(request: Request) -> Response:
    tenant = _tenant(request)
    job = await _client(request).get_job(tenant, paths.job_id(request))
    return JSONResponse(jobjson.render_job(job, _base_url(request)))


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = paths.whole_number(raw)
    if value is None or not low <= value <= high:
        raise MeshError(
            Reason.INVALID_FIELD,
            f"{name} must be a whole number from {low} to {high}.",
            fields={name: f"must be a whole number from {low} to {high}"},
        )
    return value


async def list_jobs(request: Request) -> Response:
    tenant = _tenant(request)
    limit = _query_int(request, "limit", 20, 1, 100)
    offset = _query_int(request, "offset", 0, 0, 10_000_000)
    status_name = request.query_params.get("status", "")
    if status_name and status_name not in jobjson.STATUS_FILTERS:
        raise MeshError(
            Reason.INVALID_FIELD,
            "status must be one of " + ", ".join(jobjson.STATUS_FILTERS) + ".",
            fields={"status": "must be one of " + ", ".join(jobjson.STATUS_FILTERS)},
        )
    response = await _client(request).list_jobs(
        jobs_pb2.ListJobsRequest(
            tenant=tenant,
            limit=limit,
            offset=offset,
            status=jobjson.STATUS_FILTERS.get(status_name, jobs_pb2.JOB_STATUS_UNSPECIFIED),
        )
    )
    base = _base_url(request)
    return JSONResponse(
        {
            "jobs": [jobjson.render_job(job, base) for job in response.jobs],
            "pagination": {
                "limit": limit,
                "offset": offset,
                "total": response.total,
                "hasMore": offset + len(response.jobs) < response.total,
            },
        }
    )


async def cancel_job(request: Request) -> Response:
    tenant = _tenant(request)
    job = await _client(request).cancel_job(tenant, paths.job_id(request))
    return JSONResponse(jobjson.render_job(job, _base_url(request)))


async def download_file(request: Request) -> Response:
    tenant = _tenant(request)
    wanted = requested_range(request)
    header, body = await _client(request).read_output(
        tenant, paths.job_id(request), paths.file_index(request), byte_range=wanted
    )
    return await download_response(request, header, body, ranged=wanted is not None)


async def download_archive(request: Request) -> Response:
    tenant = _tenant(request)
    wanted = requested_range(request)
    header, body = await _client(request).read_output(
        tenant, paths.job_id(request), 0, archive=True, byte_range=wanted
    )
    return await download_response(request, header, body, ranged=wanted is not None)


async def healthz(request: Request) -> Response:
    if await _client(request).healthy():
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        {"status": "unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
    )


async def on_mesh_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MeshError)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.reason.retryable else None
    if exc.reason is Reason.INTERNAL:
        log.error("internal error on %s %s", request.method, request.url.path)
    return JSONResponse(exc.to_http_body(), status_code=exc.reason.http_status, headers=headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = {404: Reason.NOT_FOUND, 405: Reason.INVALID_FIELD}.get(
        exc.status_code, Reason.INTERNAL
    )
    body = MeshError(reason, str(exc.detail)).to_http_body()
    return JSONResponse(body, status_code=exc.status_code)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(MeshError(Reason.INTERNAL).to_http_body(), status_code=500)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.client = JobClient(settings.orchestrator, settings.rpc_timeout_seconds)
        try:
            yield
        finally:
            await app.state.client.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}", cancel_job, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/files/{index}", download_file, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/docs", docs.docs_page, methods=["GET"]),
        Route("/api/jobs/{job_id}/events", events.job_events, methods=["GET"]),
        Route("/api/jobs/{job_id}/archive", download_archive, methods=["GET"]),
        Route("/api/convert", sync.convert, methods=["POST"]),
        Route("/api/compress", sync.compress, methods=["POST"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        *web.routes,
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(metrics.RequestMetrics, routes=routes)],
        exception_handlers={
            MeshError: on_mesh_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
