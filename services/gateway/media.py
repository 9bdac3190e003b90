"""`POST /api/media/<tool>`: the media tools of API.md, run by the workers of the same mesh.

A synchronous run over one small file goes to the orchestrator's Convert as `/api/convert`
does (nothing stored; `services.gateway.inline`), every other run is a job. Answered
synchronously within the sync budget of `/api/convert` (Convertly's `{"files": [...]}`
with `data:` URLs, the bytes with `Accept: application/octet-stream`, and for inspect the
`{"media": {...}}` document), or, with `async=true` (alias `background=true`), 202 with
`{"jobId", "status": "pending", "tool"}`: the job then shows in `GET /api/jobs` like any other.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mesh.errors import MeshError
from mesh.tools.catalog import TOOLS, Tool
from services.gateway import submission, sync, toolforms
from services.gateway.multipart import FormLimits
from services.gateway.settings import Settings

ASYNC_HINT = "add async=true to run the tool as a job"


def path(tool: Tool) -> str:
    return f"/api/media/{tool.name}"


async def run_tool(request: Request, tool: Tool) -> Response:
    settings: Settings = request.app.state.settings
    budget = settings.sync_max_bytes
    # Whether the tool runs as a job is only known once the form is read: it is read with the
    # jobs' limits, and a synchronous run over the budget is refused then (toolforms).
    limits = FormLimits(
        max_files=settings.max_files,
        max_file_bytes=settings.max_file_bytes,
        max_body_bytes=settings.max_body_bytes,
    )
    until = sync.deadline(settings)
    extra = frozenset({tool.extra_file}) if tool.extra_file else frozenset()
    holding = sync.Holding(request, budget)
    read = await submission.read(
        request, toolforms.parser(tool, budget), limits, extra, store=holding
    )
    holder = holding.holder
    assert holder is not None  # the form's reader asked for the tenant's store
    form = read.form
    shape = sync.Shape.DOCUMENT if tool.name == "inspect" else None
    if not form.background:
        try:
            answered = await sync.inline(request, read, holder, until, hint=ASYNC_HINT, shape=shape)
        except MeshError as error:
            raise sync.over_budget(error, budget, ASYNC_HINT) from None
        if answered is not None:
            return answered
    stored = await sync.stored(read, holder)
    if form.background:
        submitted = await submission.create(request, stored, settings.max_file_bytes)
        body: dict[str, Any] = {
            "jobId": submitted.job.job_id,
            "status": "pending",
            "tool": tool.name,
        }
        if form.warnings:
            body["warnings"] = list(form.warnings)
        return JSONResponse(body, status_code=202, headers=submitted.headers)
    try:
        submitted = await submission.create(
            request, stored, budget, fetch_seconds=sync.seconds_left(until)
        )
    except MeshError as error:
        raise sync.over_budget(error, budget, ASYNC_HINT) from None
    return await sync.answer(request, submitted, until, ASYNC_HINT, shape)


def _endpoint(tool: Tool) -> Any:
    async def endpoint(request: Request) -> Response:
        return await run_tool(request, tool)

    endpoint.__name__ = f"media_{tool.name.replace('-', '_')}"
    return endpoint


# One route per tool, so that each is documented with its own form and an unknown tool is 404.
routes = [Route(path(tool), _endpoint(tool), methods=["POST"]) for tool in TOOLS.values()]
