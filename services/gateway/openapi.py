"""The gateway's OpenAPI 3.1 document, built from the tables the gateway itself validates and
renders with (per-file options, output formats, resize presets, job states, the error table), so
a new format, preset, option or reason shows up here without anyone editing the document."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mesh import jobjson as render
from mesh.errors import Reason
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS
from mesh.jobs.v1 import jobs_pb2
from mesh.options import PRESETS, ConversionOptions, Mode
from services.gateway import forms
from services.gateway.file_options import (
    COMPRESS_JOB,
    COMPRESS_SYNC,
    CONVERT,
    MAX_PIXELS_PER_SIDE,
    OptionSet,
)
from services.gateway.settings import Settings

Schema = dict[str, Any]
Operation = tuple[str, str]  # (method, path)

_LIST_LIMIT = (1, 100, 20)  # min, max, default of GET /api/jobs?limit (app.list_jobs)
_LIST_MAX_OFFSET = 10_000_000
_JOB_TYPES = [
    render._name(name, "JOB_TYPE_")
    for name, value in jobs_pb2.JobType.items()
    if value != jobs_pb2.JOB_TYPE_UNSPECIFIED
]
_FILE_STATUSES = [
    render.file_status(v)
    for v in jobs_pb2.FileStatus.values()
    if v != jobs_pb2.FILE_STATUS_UNSPECIFIED
]
_BINARY: Schema = {"type": "string", "format": "binary"}
_REASONS = [reason.value for reason in Reason]
# Every Job key but the optional `callbacks` (issue 6) is always present.
_JOB_KEYS = [
    *("jobId", "jobType", "status", "totalFiles", "completedFiles", "failedFiles", "progress"),
    *("errorMessage", "results", "createdAt", "updatedAt", "completedAt"),
]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    widened = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def _integer(low: int, high: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return schema


_STRING: Schema = {"type": "string"}
_COUNT = _integer(0)
_PERCENT = _integer(0, 100)

# Per ConversionOptions field: the value's schema and what it means (API.md "Jobs").
_OPTION_VALUES: dict[str, tuple[Schema, str]] = {
    "format": (
        {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "Output format. Required for convert; for compress, default is the input's own format.",
    ),
    "resize": (
        {"type": "string", "enum": list(PRESETS)},
        "Resize preset (see the presets table in API.md); width/height/square read "
        "resizeWidth/resizeHeight.",
    ),
    "resize_width": (_integer(1, MAX_PIXELS_PER_SIDE), "Pixels for `width` and `square`."),
    "resize_height": (_integer(1, MAX_PIXELS_PER_SIDE), "Pixels for `height`."),
    "compression": (_integer(1, 100), "Output quality; for svg output, the tracing detail."),
    "auto_orient": ({"type": "boolean"}, "Apply the EXIF orientation."),
    "mono": ({"type": "boolean"}, "svg output as a one-colour silhouette instead of layers."),
    "mode": (
        {"type": "string", "enum": [mode.value for mode in Mode]},
        "quality, or target-size (then targetBytes is required).",
    ),
    "target_bytes": (_integer(1, 2**63 - 1), "target-size mode: largest acceptable output."),
    "lossless": ({"type": "boolean"}, "Lossless encode where the format allows."),
    "strip_metadata": (
        {"type": "boolean"},
        "Drop EXIF/XMP/IPTC/GPS and container tags (the ICC profile is kept, converted to sRGB).",
    ),
}
_DEFAULTS = ConversionOptions()


def _default(attr: str) -> Any:
    value = getattr(_DEFAULTS, attr)
    if isinstance(value, Mode):
        return value.value
    return None if value in ("", 0, None) and not isinstance(value, bool) else value


def _option_fields(using: OptionSet) -> dict[str, Schema]:
    """The single and per-file JSON-array form of every option the route reads."""
    properties: dict[str, Schema] = {}
    for option in using.options:
        value, meaning = _OPTION_VALUES[option.attr]
        single = {**value, "description": meaning}
        default = _default(option.attr)
        if default is not None:
            single["default"] = default
        properties[option.name] = single
        if option.alias and using.quality_alias:
            properties[option.alias] = {**single, "description": f"Alias of `{option.name}`."}
        properties[option.array] = {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"type": "array", "items": nullable(value)},
            "description": f"Per-file `{option.name}`: a JSON array with exactly one entry per "
            f"file (else 400). A null or empty entry falls back to `{option.name}`.",
        }
    return properties


def _form(using: OptionSet, extra: dict[str, Schema]) -> Schema:
    properties: dict[str, Schema] = {
        "files": {
            "type": "array",
            "items": _BINARY,
            "minItems": 1,
            "maxItems": Settings.max_files,
            "description": "The files (parts may also be named files[], files[N] or file).",
        },
        **extra,
        **_option_fields(using),
    }
    return {
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["files"], "properties": properties},
                "encoding": {"files": {"contentType": "application/octet-stream"}},
            }
        },
        "required": True,
    }


def _flag(default: bool, meaning: str) -> Schema:
    return {"type": "boolean", "default": default, "description": meaning}


_JOB_FIELDS: dict[str, Schema] = {
    "jobType": {"type": "string", "enum": _JOB_TYPES, "default": "convert"},
    "createArchive": _flag(False, "Also bundle all outputs into one zip."),
    "saveToStorage": _flag(True, "Accepted for Convertly clients: jobs always store sources."),
    "callbackUrl": {
        "type": "string",
        "format": "uri",
        "maxLength": forms.MAX_CALLBACK_URL_CHARS,
        "description": "http(s) URL that receives the signed completion callback.",
    },
    "callbackSecret": {
        "type": "string",
        "maxLength": forms.MAX_CALLBACK_SECRET_CHARS,
        "description": "HMAC-SHA256 key of the Convertly-Signature header.",
    },
}


def _object(required: list[str] | None, open_: bool = False, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if not open_:
        schema["additionalProperties"] = False
    return schema


def _time() -> Schema:
    return {"type": ["string", "null"], "format": "date-time"}


def component_schemas() -> dict[str, Schema]:
    text_or_null = nullable(_STRING)
    return {
        "Error": _object(
            None,
            error={"type": "string", "minLength": 1, "description": "What to do about it."},
            code={"type": "string", "enum": _REASONS},
            detail={
                "type": "object",
                "properties": {"fields": {"type": "object", "additionalProperties": _STRING}},
                "description": "`fields` names every bad field of a 400.",
            },
        ),
        "FileResult": _object(
            None,
            index=_COUNT,
            filename=_STRING,
            status={"type": "string", "enum": _FILE_STATUSES},
            progress=_PERCENT,
            originalSize=_COUNT,
            finalSize=nullable(_COUNT),
            savedPercent={"type": ["number", "null"], "maximum": 100},
            mimeType=text_or_null,
            format=nullable({"type": "string", "enum": list(OUTPUT_FORMATS)}),
            detectedFormat=nullable({"type": "string", "enum": list(INPUT_FAMILIES)}),
            appliedQuality=nullable(_integer(0, 100)),
            width=nullable(_integer(1)),
            height=nullable(_integer(1)),
            duration={"type": ["number", "null"], "minimum": 0},
            downloadUrl=nullable({"type": "string", "format": "uri"}),
            errorMessage=text_or_null,
            errorCode=nullable({"type": "string", "enum": _REASONS}),
            entries={
                "type": ["array", "null"],
                "items": ref("ArchiveEntry"),
                "description": "For an archive input converted entry by entry.",
            },
        ),
        "Archive": _object(
            None,
            status={"type": "string", "enum": _FILE_STATUSES},
            size=nullable(_COUNT),
            mimeType={"type": "string", "enum": ["application/zip"]},
            downloadUrl=nullable({"type": "string", "format": "uri"}),
            errorMessage=text_or_null,
        ),
        "ArchiveEntry": _object(
            None,
            name=_STRING,
            status={"type": "string", "enum": _FILE_STATUSES},
            outputName=text_or_null,
            errorMessage=text_or_null,
        ),
        "CallbackDelivery": _object(
            ["type", "attempt", "status"],
            open_=True,
            type=_STRING,
            attempt=_integer(1),
            status=_STRING,
            at=_time(),
        ),
        "Job": _object(
            [*_JOB_KEYS],
            jobId={"type": "string", "format": "uuid"},
            jobType={"type": "string", "enum": _JOB_TYPES},
            status={"type": "string", "enum": list(render.STATUS_FILTERS)},
            totalFiles=_COUNT,
            completedFiles=_COUNT,
            failedFiles=_COUNT,
            progress=_PERCENT,
            errorMessage=text_or_null,
            results=_object(
                None,
                files={"type": "array", "items": ref("FileResult")},
                archive=nullable(ref("Archive")),
            ),
            createdAt=_time(),
            updatedAt=_time(),
            completedAt=_time(),
            callbacks={"type": "array", "items": ref("CallbackDelivery")},
        ),
        "JobCreated": _object(
            None,
            jobId={"type": "string", "format": "uuid"},
            status={"type": "string", "enum": list(render.STATUS_FILTERS)},
        ),
        "Pagination": _object(
            None,
            limit=_integer(_LIST_LIMIT[0], _LIST_LIMIT[1]),
            offset=_integer(0, _LIST_MAX_OFFSET),
            total=_COUNT,
            hasMore={"type": "boolean"},
        ),
        "JobList": _object(
            None, jobs={"type": "array", "items": ref("Job")}, pagination=ref("Pagination")
        ),
        "SyncFile": _object(
            None,
            filename=_STRING,
            originalSize=_COUNT,
            finalSize=_COUNT,
            savedPercent={"type": ["number", "null"], "maximum": 100},
            mimeType=_STRING,
            downloadUrl={"type": "string", "description": "The output as a data: URL."},
            appliedQuality=nullable(_integer(0, 100)),
        ),
        "SyncResult": _object(
            None,
            files={"type": "array", "items": ref("SyncFile")},
            storage=_object(None, saved={"type": "boolean"}),
        ),
        "Health": _object(None, status={"type": "string", "enum": ["ok", "unavailable"]}),
    }


_WHEN: dict[int, str] = {
    400: "A field is invalid; `detail.fields` names every bad field.",
    401: "The API key is missing or unknown.",
    403: "This key may not do that.",
    404: "No such job (or file) for this key's tenant, or it has expired.",
    409: "The job's state does not allow this, or the Idempotency-Key was used with another body.",
    413: "The upload or the input exceeds a limit.",
    415: "The input format, or the input/output pair, is not supported.",
    422: "The input cannot be processed (damaged, encrypted, unreachable target).",
    429: "Too many requests or concurrent jobs for this tenant; retry after `Retry-After`.",
    500: "Something went wrong on our side.",
    503: "A dependency is down; retry after `Retry-After`.",
    504: "The work took longer than the synchronous budget; use a job instead.",
}
_ERROR_STATUSES = sorted({reason.http_status for reason in Reason})
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": _integer(0)}


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
    if status in (429, 503):
        response["headers"] = {"Retry-After": {**_RETRY_AFTER, "required": True}}
    return response


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": where, "schema": schema, "description": description}
    if where == "path":
        param["required"] = True
    return param


_JOB_ID = _param("job_id", "path", _STRING, "The jobId returned when the job was created.")
_IDEMPOTENCY_KEY = _param(
    "Idempotency-Key",
    "header",
    _STRING,
    "Same key and tenant within 24 h returns the first job and creates nothing.",
)
_DOWNLOAD_HEADERS = {
    "Content-Disposition": {"schema": _STRING, "description": "attachment; the output's name"},
    "ETag": {"schema": _STRING, "description": "Quoted SHA-256 of the bytes."},
}


_RANGE_HEADER = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "One byte range (`bytes=first-last`, `bytes=first-`, `bytes=-suffix`).",
    "schema": _STRING,
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "ETags the client has; a match answers 304.",
    "schema": _STRING,
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
_CREATE = (400, 401, 409, 413, 415, 422, 429, 500, 503)
_SYNC = (400, 401, 413, 415, 422, 429, 500, 503, 504)


def _sync(summary: str, using: OptionSet) -> Schema:
    ok = _json(ref("SyncResult"), "The outputs as data: URLs.")
    ok["content"]["application/octet-stream"] = {
        "schema": {**_BINARY, "description": "With `Accept: application/octet-stream` and one file"}
    }
    return _operation("sync", summary, ok, _SYNC, body=_form(using, {}))


def _download(
    summary: str, media_types: list[str], errors: tuple[int, ...], parameters: tuple[Schema, ...]
) -> Schema:
    """A download: the whole output (200), one byte range (206), or not modified (304)."""
    content = {media_type: {"schema": _BINARY} for media_type in media_types}
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
            "Content-Range": {"schema": _STRING, "description": "bytes first-last/size"},
        },
        "content": content,
    }
    operation["responses"]["304"] = {
        "description": "Not modified: If-None-Match names the current ETag.",
        "headers": {"ETag": _DOWNLOAD_HEADERS["ETag"]},
    }
    return operation


def operations() -> dict[Operation, Schema]:
    job_id = (_JOB_ID,)
    index = _param("index", "path", _integer(0), "The file's `index` in `results.files`.")
    listing = (
        _param("limit", "query", {**_integer(*_LIST_LIMIT[:2]), "default": _LIST_LIMIT[2]}),
        _param("offset", "query", {**_integer(0, _LIST_MAX_OFFSET), "default": 0}),
        _param("status", "query", {"type": "string", "enum": list(render.STATUS_FILTERS)}),
    )
    last_event = _param("Last-Event-ID", "header", _STRING, "Resume after this event.")
    mime_types = sorted({output.mime_type for output in OUTPUT_FORMATS.values()})
    healthz = _operation("service", "Liveness", _json(ref("Health"), "Up."), (), public=True)
    healthz["responses"]["503"] = {
        **_json(ref("Health"), "A dependency is down."),
        "headers": {"Retry-After": {**_RETRY_AFTER, "required": True}},
    }
    html = {"description": "HTML.", "content": {"text/html": {"schema": _STRING}}}
    events = {"description": "Events.", "content": {"text/event-stream": {"schema": _STRING}}}
    return {
        ("GET", "/healthz"): healthz,
        ("GET", "/openapi.json"): _operation(
            "service", "This document", _json({"type": "object"}, "OpenAPI 3.1."), (), public=True
        ),
        ("GET", "/docs"): _operation("service", "This document as a page", html, (), public=True),
        ("GET", "/metrics"): _operation(
            "service",
            "Prometheus metrics",
            {"description": "Metrics.", "content": {"text/plain": {"schema": _STRING}}},
            (),
            public=True,
        ),
        ("POST", "/api/jobs"): _operation(
            "jobs",
            "Create an asynchronous job",
            _json(ref("JobCreated"), "Accepted; poll the job or watch its events."),
            _CREATE,
            parameters=(_IDEMPOTENCY_KEY,),
            body=_form(COMPRESS_JOB, _JOB_FIELDS),
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
            "Download one output", mime_types, (401, 404, 409, 500, 503), (*job_id, index)
        ),
        ("GET", "/api/jobs/{job_id}/archive"): _download(
            "Download the zip of all outputs (createArchive=true)",
            ["application/zip"],
            (401, 404, 500, 503),
            job_id,
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
            "true/false (or 1/0). Errors are `{error, code, detail}`.",
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
