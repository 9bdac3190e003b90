"""The gateway's OpenAPI 3.1 document, built from the tables the gateway itself validates and
renders with (per-file options, output formats, resize presets, job states, the error table), so
a new format, preset, option or reason shows up here without anyone editing the document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mesh import jobjson as render
from mesh.errors import Reason
from mesh.formats import OUTPUT_FORMATS
from mesh.tools.catalog import TOOLS, Tool
from services.gateway import media, unoffered
from services.gateway.apischemas import (
    BINARY,
    JOB_FIELDS,
    LIST_LIMIT,
    LIST_MAX_OFFSET,
    STRING,
    Operation,
    Schema,
    component_schemas,
    integer,
    ref,
    sourced_form,
    tool_form,
    transfer_body,
)
from services.gateway.file_options import (
    COMPRESS_JOB,
    COMPRESS_SYNC,
    CONVERT,
    OptionSet,
)

_WHEN: dict[int, str] = {
    400: "A field is invalid; `fields` names every bad field.",
    401: "The API key is missing or unknown (`WWW-Authenticate: Bearer`).",
    403: "A download link expired or its signature does not match.",
    404: "No such job (or file) for this key's tenant, or it has expired.",
    405: "The path is served, but not with this method; `Allow` lists the methods.",
    408: "The request's headers or body arrived too slowly (a pause or a rate below the floor).",
    409: "The job's state does not allow this, or the Idempotency-Key was used with another body.",
    413: "The upload or the input exceeds a limit.",
    415: "The input format, or the input/output pair, is not supported.",
    416: "The range starts past the end; `Content-Range: bytes */size` gives the size.",
    422: "The input cannot be processed (damaged, encrypted, unreachable target).",
    429: "Too many requests or concurrent jobs for this tenant; retry after `Retry-After`.",
    500: "Something went wrong on our side.",
    503: "A dependency is down; retry after `Retry-After`.",
    501: "convertmesh does not offer this feature (the message names it).",
    504: "The work took longer than the synchronous budget; use a job instead.",
}
_ERROR_STATUSES = sorted({reason.http_status for reason in Reason})
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": integer(0)}
_ERROR_HEADERS: dict[int, tuple[str, Schema]] = {
    401: ("WWW-Authenticate", {"description": "`Bearer`", "schema": {"type": "string"}}),
    405: ("Allow", {"description": "The methods this path serves.", "schema": {"type": "string"}}),
    416: ("Content-Range", {"description": "`bytes */size`", "schema": {"type": "string"}}),
    429: ("Retry-After", _RETRY_AFTER),
    503: ("Retry-After", _RETRY_AFTER),
}


def error_codes(status: int) -> list[str]:
    """The error table's codes that answer with this status."""
    return [reason.value for reason in Reason if reason.http_status == status]


def _error_response(status: int) -> Schema:
    codes = error_codes(status)
    narrowed = {"allOf": [ref("Error"), {"properties": {"code": {"enum": codes}}}]}
    response: Schema = {
        "description": f"{_WHEN.get(status, 'An error.')} Codes: {', '.join(codes)}.",
        "content": {"application/json": {"schema": narrowed}},
    }
    header = _ERROR_HEADERS.get(status)
    if header is not None:
        response["headers"] = {header[0]: {**header[1], "required": True}}
    return response


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": where, "schema": schema, "description": description}
    if where == "path":
        param["required"] = True
    return param


_JOB_ID = _param("job_id", "path", STRING, "The jobId returned when the job was created.")
_IDEMPOTENCY_KEY = _param(
    "Idempotency-Key",
    "header",
    STRING,
    "Same key and tenant within 24 h returns the first job and creates nothing.",
)
_SIGNED_LINK = (
    _param(
        "expires",
        "query",
        integer(0),
        "Signed link: Unix time the link expires at (from the job's `downloadUrl`).",
    ),
    _param(
        "signature",
        "query",
        STRING,
        "Signed link: the HMAC from the job's `downloadUrl`; with it no API key is needed.",
    ),
)
_REPLAYED = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present when the Idempotency-Key named a job created before: the "
        "answer is the first one, replayed.",
    }
}
_DOWNLOAD_HEADERS = {
    "Content-Disposition": {"schema": STRING, "description": "attachment; the output's name"},
    "ETag": {"schema": STRING, "description": "Quoted SHA-256 of the bytes."},
}


_RANGE_HEADER = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "One byte range (`bytes=first-last`, `bytes=first-`, `bytes=-suffix`).",
    "schema": STRING,
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags the client has; a match answers 304.",
    "schema": STRING,
}


def _operation(
    tag: str,
    summary: str,
    ok: Schema,
    errors: tuple[int, ...],
    *,
    parameters: tuple[Schema, ...] = (),
    body: Schema | None = None,
    public: bool = False,
) -> Schema:
    operation: Schema = {
        "tags": [tag],
        "summary": summary,
        "responses": {
            "200": ok,
            **{str(s): {"$ref": f"#/components/responses/E{s}"} for s in errors},
        },
    }
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


_READ = (401, 404, 500, 503)
_CREATE = (400, 401, 408, 409, 413, 415, 422, 429, 500, 503)
_SYNC = (400, 401, 408, 413, 415, 422, 429, 500, 503, 504)


def _sync(summary: str, using: OptionSet) -> Schema:
    ok = _json(ref("SyncResult"), "The outputs as data: URLs.")
    ok["content"]["application/octet-stream"] = {
        "schema": {**BINARY, "description": "With `Accept: application/octet-stream` and one file"}
    }
    ok["headers"] = _REPLAYED
    return _operation(
        "sync", summary, ok, _SYNC, parameters=(_IDEMPOTENCY_KEY,), body=sourced_form(using, {})
    )


_TOOL_ERRORS = (400, 401, 408, 413, 415, 422, 429, 500, 501, 503, 504)


def _tool(tool: Tool) -> Schema:
    """POST /api/media/<tool>: answered now, or as a job with async=true."""
    if tool.name == "inspect":
        ok = _json(ref("MediaDocument"), "The media document.")
    else:
        ok = _json(ref("SyncResult"), "The output as a data: URL.")
        ok["content"]["application/octet-stream"] = {
            "schema": {**BINARY, "description": "With `Accept: application/octet-stream`"}
        }
    operation = _operation(
        "media",
        tool.summary,
        ok,
        _TOOL_ERRORS,
        parameters=(_IDEMPOTENCY_KEY,),
        body=tool_form(tool),
    )
    operation["responses"]["202"] = _json(
        ref("ToolJobCreated"), "async=true: the job; follow it like any job."
    )
    return operation


def _transfer() -> Schema:
    ok = _json(ref("Job"), "destination=storage: the finished job, its file downloadable.")
    ok["content"]["application/octet-stream"] = {
        "schema": {**BINARY, "description": "destination=download: the bytes"}
    }
    ok["content"]["application/json"]["schema"] = {"anyOf": [ref("Job"), ref("SyncResult")]}
    operation = _operation(
        "media",
        "Fetch a file from a sourceUrl into storage (extract=true unpacks an archive)",
        ok,
        _TOOL_ERRORS,
        parameters=(_IDEMPOTENCY_KEY,),
        body=transfer_body(),
    )
    operation["responses"]["202"] = _json(ref("ToolJobCreated"), "async=true: the job.")
    return operation


def _not_offered() -> dict[Operation, Schema]:
    """Convertly routes convertmesh does not offer: 501, named (not fuzzed: a 501 is their
    documented answer)."""
    rest = _param("rest", "path", STRING, "The rest of the path.")
    found: dict[Operation, Schema] = {}
    for route in unoffered.routes:
        for method in unoffered.METHODS:
            operation = _operation(
                "not offered",
                "Not offered by convertmesh: 501",
                {"description": "Never."},
                (401, 501),
                parameters=(rest,),
            )
            del operation["responses"]["200"]
            operation["x-not-offered"] = True
            found[(method, route.path_format)] = operation
    return found


def _download(
    summary: str, media_types: list[str], errors: tuple[int, ...], parameters: tuple[Schema, ...]
) -> Schema:
    """A download: the whole output (200), one byte range (206), or not modified (304)."""
    content = {media_type: {"schema": BINARY} for media_type in media_types}
    operation = _operation(
        "jobs",
        summary,
        {"description": "The output's bytes.", "headers": _DOWNLOAD_HEADERS, "content": content},
        (*errors, 416),
        parameters=(*parameters, _RANGE_HEADER, _IF_NONE_MATCH),
    )
    operation["responses"]["206"] = {
        "description": "The requested byte range.",
        "headers": {
            **_DOWNLOAD_HEADERS,
            "Content-Range": {"schema": STRING, "description": "bytes first-last/size"},
        },
        "content": content,
    }
    operation["responses"]["304"] = {
        "description": "Not modified: If-None-Match names the current ETag.",
        "headers": {"ETag": _DOWNLOAD_HEADERS["ETag"]},
    }
    # The API key, or nothing but the signed link's query.
    operation["security"] = [{"bearer": []}, {"apiKey": []}, {}]
    return operation


def operations() -> dict[Operation, Schema]:
    job_id = (_JOB_ID,)
    index = _param("index", "path", integer(0), "The file's `index` in `results.files`.")
    listing = (
        _param("limit", "query", {**integer(*LIST_LIMIT[:2]), "default": LIST_LIMIT[2]}),
        _param("offset", "query", {**integer(0, LIST_MAX_OFFSET), "default": 0}),
        _param("status", "query", {"type": "string", "enum": list(render.STATUS_FILTERS)}),
    )
    last_event = _param("Last-Event-ID", "header", STRING, "Resume after this event.")
    mime_types = sorted({output.mime_type for output in OUTPUT_FORMATS.values()})
    healthz = _operation("service", "Liveness", _json(ref("Health"), "Up."), (), public=True)
    healthz["responses"]["503"] = {
        **_json(ref("Health"), "A dependency is down."),
        "headers": {"Retry-After": {**_RETRY_AFTER, "required": True}},
    }
    html = {"description": "HTML.", "content": {"text/html": {"schema": STRING}}}
    events = {"description": "Events.", "content": {"text/event-stream": {"schema": STRING}}}
    return {
        ("GET", "/healthz"): healthz,
        ("GET", "/openapi.json"): _operation(
            "service", "This document", _json({"type": "object"}, "OpenAPI 3.1."), (), public=True
        ),
        ("GET", "/docs"): _operation("service", "This document as a page", html, (), public=True),
        ("GET", "/"): _operation(
            "service", "The web page: convert files in a browser", html, (), public=True
        ),
        ("GET", "/web/{name}"): _operation(
            "service",
            "The web page's script, style sheet and icon",
            {
                "description": "A static file.",
                "content": {
                    kind: {"schema": STRING}
                    for kind in ("text/javascript", "text/css", "image/svg+xml")
                },
            },
            (404,),
            parameters=(_param("name", "path", STRING, "app.js, app.css or icon.svg"),),
            public=True,
        ),
        ("POST", "/api/jobs"): _operation(
            "jobs",
            "Create an asynchronous job",
            {
                **_json(ref("JobCreated"), "Accepted; poll the job or watch its events."),
                "headers": _REPLAYED,
            },
            _CREATE,
            parameters=(_IDEMPOTENCY_KEY,),
            body=sourced_form(COMPRESS_JOB, JOB_FIELDS),
        ),
        ("GET", "/api/jobs"): _operation(
            "jobs",
            "The tenant's jobs, newest first",
            _json(ref("JobList"), "A page."),
            (400, 401, 500, 503),
            parameters=listing,
        ),
        ("GET", "/api/jobs/{job_id}"): _operation(
            "jobs", "A job", _json(ref("Job"), "The job."), _READ, parameters=job_id
        ),
        ("DELETE", "/api/jobs/{job_id}"): _operation(
            "jobs",
            "Cancel a pending job",
            _json(ref("Job"), "The cancelled job."),
            (401, 404, 409, 500, 503),
            parameters=job_id,
        ),
        ("GET", "/api/jobs/{job_id}/files/{index}"): _download(
            "Download one output",
            mime_types,
            (401, 403, 404, 409, 500, 503),
            (*job_id, index, *_SIGNED_LINK),
        ),
        ("GET", "/api/jobs/{job_id}/archive"): _download(
            "Download the zip of all outputs (createArchive=true)",
            ["application/zip"],
            (401, 403, 404, 500, 503),
            (*job_id, *_SIGNED_LINK),
        ),
        ("GET", "/api/jobs/{job_id}/events"): _operation(
            "jobs",
            "Progress as server-sent events: `file` (a FileResult), `job` (the Job), then `end`",
            events,
            _READ,
            parameters=(*job_id, last_event),
        ),
        ("POST", "/api/convert"): _sync("Convert and wait (small inputs)", CONVERT),
        ("POST", "/api/compress"): _sync(
            "Compress and wait; outputs keep their format", COMPRESS_SYNC
        ),
        **{("POST", media.path(tool)): _tool(tool) for tool in TOOLS.values()},
        ("POST", "/api/transfer"): _transfer(),
        **_not_offered(),
    }


def registered_operations(routes: list[BaseRoute]) -> frozenset[Operation]:
    """(method, path) of every route the app serves, HEAD aside (Starlette adds it to GET)."""
    return frozenset(
        (method, route.path_format)
        for route in routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    )


def build_document() -> Schema:
    paths: dict[str, Schema] = {}
    for (method, path), operation in operations().items():
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "convertmesh",
            "version": "1",
            "description": "Convertly-compatible file conversion API. Booleans in forms are "
            "true/false (or 1/0). Errors are `{error, code, detail, fields, meta}` with "
            "`detail` a string. Fields a route does not read are listed in `warnings`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": component_schemas(),
            "responses": {f"E{status}": _error_response(status) for status in _ERROR_STATUSES},
        },
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(build_document())
