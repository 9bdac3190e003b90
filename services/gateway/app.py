"""The public REST contract (API.md) on Starlette: each route is a thin call into the
orchestrator's JobService; errors become Convertly's `{"error", "code", "detail", "fields",
"meta"}` bodies, with the headers their status calls for (`Retry-After`, `WWW-Authenticate`,
`Allow`, `Content-Range`). Browsers on the operator's `CORS_ORIGINS` may call it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from mesh import jobjson
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.links import DownloadLinks
from services.gateway import (
    auth,
    docs,
    early,
    events,
    guard,
    media,
    metrics,
    openapi,
    paths,
    submission,
    sync,
    transfer,
    unoffered,
    web,
)
from services.gateway.client import JobClient
from services.gateway.downloads import download_response, requested_range
from services.gateway.forms import parse_job_form
from services.gateway.multipart import FormLimits
from services.gateway.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
WWW_AUTHENTICATE = 'Bearer realm="convertmesh"'
# What a browser on an allowed origin may send and read (CORS).
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "Last-Event-ID",
    "Range",
    "x-api-key",
)
CORS_EXPOSED_HEADERS = (
    "Content-Disposition",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "ETag",
    "Retry-After",
    "WWW-Authenticate",
    submission.REPLAYED_HEADER,
)


def _client(request: Request) -> JobClient:
    client: JobClient = request.app.state.client
    return client


def _tenant(request: Request) -> str:
    return auth.tenant_for(request, request.app.state.settings.api_keys)


def links(request: Request) -> DownloadLinks:
    """Signed download links on the base URL this request reached the gateway by."""
    settings: Settings = request.app.state.settings
    return DownloadLinks(str(request.base_url), settings.links)


def _download_tenant(request: Request) -> str:
    """The tenant of a download: the API key's when a valid one is sent (clients that always
    send it keep working with any link), else the signed link's."""
    settings: Settings = request.app.state.settings
    query = request.query_params
    signed = "signature" in query or "expires" in query
    if auth.presented_key(request) or not signed:
        try:
            return _tenant(request)
        except MeshError:
            if not signed:
                raise
    return settings.links.verify(
        settings.tenants,
        request.url.path,
        query.get("expires", ""),
        query.get("signature", ""),
    )


async def create_job(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    limits = FormLimits(
        max_files=settings.max_files,
        max_file_bytes=settings.max_file_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    submitted = await submission.submit(
        request, parse_job_form, limits, vet=early.unknown_to_named_output
    )
    # A job is always pending when created, so a replay answers exactly what the first did.
    body: dict[str, Any] = {"jobId": submitted.job.job_id, "status": "pending"}
    if submitted.form.warnings:
        body["warnings"] = list(submitted.form.warnings)
    return JSONResponse(body, headers=submitted.headers)


async def get_job(request: Request) -> Response:
    tenant = _tenant(request)
    job = await _client(request).get_job(tenant, paths.job_id(request))
    return JSONResponse(jobjson.render_job(job, links(request)))


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
    shown = links(request)
    return JSONResponse(
        {
            "jobs": [jobjson.render_job(job, shown) for job in response.jobs],
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
    return JSONResponse(jobjson.render_job(job, links(request)))


async def download_file(request: Request) -> Response:
    tenant = _download_tenant(request)
    wanted = requested_range(request)
    header, body = await _client(request).read_output(
        tenant, paths.job_id(request), paths.file_index(request), byte_range=wanted
    )
    return await download_response(request, header, body, ranged=wanted is not None)


async def download_archive(request: Request) -> Response:
    tenant = _download_tenant(request)
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


def error_headers(error: MeshError) -> dict[str, str]:
    """The headers an error's status calls for (RFC 9110)."""
    headers: dict[str, str] = {}
    if error.reason.retry_after:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    if error.reason is Reason.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if error.reason is Reason.RANGE_NOT_SATISFIABLE and "size" in error.detail:
        headers["Content-Range"] = f"bytes */{error.detail['size']}"
    return headers


def render_error(error: MeshError) -> Response:
    headers = error_headers(error)
    if error.reason is Reason.REQUEST_TIMEOUT:
        headers["Connection"] = "close"  # the rest of the body is not read
    return JSONResponse(error.to_http_body(), status_code=error.reason.http_status, headers=headers)


async def on_mesh_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MeshError)
    if exc.reason is Reason.INTERNAL:
        log.error("internal error on %s %s", request.method, request.url.path)
    return render_error(exc)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (Starlette's own 405 names only the
    methods of the first route that matched the path)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and isinstance(route, Route):
            methods |= route.methods or set()
    return sorted(methods)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = allowed_methods(request)
        error = MeshError(
            Reason.METHOD_NOT_ALLOWED,
            f"{request.method} is not served on this path; use {', '.join(allow)}.",
            allowed=allow,
        )
        return JSONResponse(
            error.to_http_body(), status_code=405, headers={"Allow": ", ".join(allow)}
        )
    reason = Reason.NOT_FOUND if exc.status_code == 404 else Reason.INTERNAL
    body = MeshError(reason, str(exc.detail)).to_http_body()
    return JSONResponse(body, status_code=exc.status_code)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(MeshError(Reason.INTERNAL).to_http_body(), status_code=500)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.client = JobClient(
            settings.orchestrator, settings.rpc_timeout_seconds, settings.upload_deadline
        )
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
        Route("/api/transfer", transfer.transfer, methods=["POST"]),
        *media.routes,
        *web.routes,
        *unoffered.routes,
    ]
    middleware = [
        Middleware(metrics.RequestMetrics, routes=routes),
        Middleware(guard.KeyThrottle, limits=settings.guard, render=render_error),
        Middleware(
            guard.UploadGuard,
            limits=settings.guard,
            keys=settings.api_keys,
            render=render_error,
        ),
    ]
    if settings.cors_origins:
        # Outermost, so that error answers carry the CORS headers too.
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=list(CORS_REQUEST_HEADERS),
                expose_headers=list(CORS_EXPOSED_HEADERS),
                max_age=600,
            ),
        )
    traced = metrics.tracing_middleware(routes)
    if traced is not None:
        middleware.insert(0, traced)  # outermost: the request's span covers everything
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            MeshError: on_mesh_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
