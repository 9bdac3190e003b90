"""Schemas of the gateway's OpenAPI document: request forms built from the per-file option
table, response bodies matching what `mesh.jobjson` renders."""

from __future__ import annotations

from typing import Any

from mesh import jobjson as render
from mesh.errors import Reason
from mesh.fields import defaults, specs
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS
from mesh.jobs.v1 import jobs_pb2
from mesh.options import PRESETS, ConversionOptions, Mode
from mesh.tools.catalog import TOOLS, Tool
from services.gateway import forms, toolforms, transfer
from services.gateway.file_options import (
    MAX_PIXELS_PER_SIDE,
    OptionSet,
)
from services.gateway.settings import Settings

Schema = dict[str, Any]
Operation = tuple[str, str]  # (method, path)

LIST_LIMIT = (1, 100, 20)  # min, max, default of GET /api/jobs?limit (app.list_jobs)
LIST_MAX_OFFSET = 10_000_000
_JOB_TYPES = [
    render._name(name, "JOB_TYPE_")
    for name, value in jobs_pb2.JobType.items()
    if value != jobs_pb2.JOB_TYPE_UNSPECIFIED
]
_FILE_STATUSES = list(render.PUBLIC_FILE_STATUSES)
BINARY: Schema = {"type": "string", "format": "binary"}
_REASONS = [reason.value for reason in Reason]
# What an output can be: a conversion's format, or a media tool's (inspect writes json;
# trim and strip-metadata keep an input's own, mkv or avi say).
_RESULT_FORMATS = list(dict.fromkeys([*OUTPUT_FORMATS, *INPUT_FAMILIES, "json"]))
# Every Job key but the optional `callbacks` (issue 6) is always present.
_JOB_KEYS = [
    *("jobId", "jobType", "status", "totalFiles", "completedFiles", "failedFiles", "progress"),
    *("errorMessage", "cancelled", "cancelledAt", "results", "createdAt", "updatedAt"),
    "completedAt",
]
_WARNINGS: Schema = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Fields that were sent but not read (unknown to the route, or ignored by "
    "it), one sentence each. Absent when there are none.",
}
_SIGNED_URL: Schema = {
    "type": "string",
    "format": "uri",
    "description": "The gateway's download route with `expires` and `signature`: works "
    "without the API key until it expires (403 LINK_EXPIRED, then fetch the job again).",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    widened = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        widened["enum"] = [*schema["enum"], None]
    return widened


def integer(low: int, high: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return schema


STRING: Schema = {"type": "string"}
_COUNT = integer(0)
_PERCENT = integer(0, 100)

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
    "resize_width": (integer(1, MAX_PIXELS_PER_SIDE), "Pixels for `width` and `square`."),
    "resize_height": (integer(1, MAX_PIXELS_PER_SIDE), "Pixels for `height`."),
    "compression": (integer(1, 100), "Output quality; for svg output, the tracing detail."),
    "auto_orient": ({"type": "boolean"}, "Apply the EXIF orientation."),
    "mono": ({"type": "boolean"}, "svg output as a one-colour silhouette instead of layers."),
    "mode": (
        {"type": "string", "enum": [mode.value for mode in Mode]},
        "quality, or target-size (then targetBytes is required).",
    ),
    "target_bytes": (integer(1, 2**63 - 1), "target-size mode: largest acceptable output."),
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


def form(using: OptionSet, extra: dict[str, Schema]) -> Schema:
    properties: dict[str, Schema] = {
        "files": {
            "type": "array",
            "items": BINARY,
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


_SOURCE_URL: Schema = {
    "type": "string",
    "format": "uri",
    "maxLength": forms.MAX_URL_CHARS,
    "description": "Instead of an uploaded file: an http(s) URL the mesh fetches (never from "
    "a private, loopback or metadata address), within the upload limits and a time limit.",
}


def sourced_form(using: OptionSet, extra: dict[str, Schema]) -> Schema:
    """A conversion form that takes its files as uploads or as one sourceUrl."""
    body = form(using, {**extra, forms.SOURCE_URL: _SOURCE_URL})
    schema = body["content"]["multipart/form-data"]["schema"]
    del schema["required"]
    schema["properties"]["files"]["minItems"] = 0
    return body


def _tool_property(rule_schema: Schema, default: Any) -> Schema:
    prop = dict(rule_schema)
    if default is not None and default != "":
        prop["default"] = default
    return prop


def tool_form(tool: Tool) -> Schema:
    """The form of POST /api/media/<tool>: its file(s) or a sourceUrl, its parameters with
    their API.md defaults, async/background, and the tool's second file."""
    given = defaults(tool.params)
    properties: dict[str, Schema] = {}
    if tool.max_files > 1:
        properties["files"] = {
            "type": "array",
            "items": BINARY,
            "maxItems": tool.max_files,
            "description": "The files, in page order (parts may also be named file, files[] "
            "or files[N]).",
        }
    else:
        properties["file"] = {**BINARY, "description": "The file (or a part named files)."}
    properties[forms.SOURCE_URL] = _SOURCE_URL
    for _, spec in specs(tool.params):
        properties[spec.name] = _tool_property(spec.rule.schema, given[spec.name])
    if tool.extra_file:
        properties[tool.extra_file] = {
            **BINARY,
            "description": "A logo to lay over instead of text.",
        }
    properties[toolforms.ASYNC] = _flag(False, "Run as a job: answer 202 with its jobId.")
    properties[toolforms.BACKGROUND] = _flag(False, "Alias of `async`.")
    encoding = {name: {"contentType": "application/octet-stream"} for name in ("file", "files")}
    return {
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": properties},
                "encoding": {name: enc for name, enc in encoding.items() if name in properties},
            }
        },
        "required": True,
    }


def transfer_body() -> Schema:
    schema = _object(
        [forms.SOURCE_URL],
        open_=True,
        sourceUrl=_SOURCE_URL,
        destination={
            "type": "string",
            "enum": list(transfer.DESTINATIONS),
            "default": "storage",
            "description": "storage: answer the job with its download links; download: "
            "answer the bytes (the sync budget applies).",
        },
        extract=_flag(False, "Unpack an archive: its members become the job's files."),
        **{
            toolforms.ASYNC: _flag(False, "Answer 202 with the job at once."),
            toolforms.BACKGROUND: _flag(False, "Alias of `async`."),
        },
    )
    return {"content": {"application/json": {"schema": schema}}, "required": True}


def _flag(default: bool, meaning: str) -> Schema:
    return {"type": "boolean", "default": default, "description": meaning}


JOB_FIELDS: dict[str, Schema] = {
    "jobType": {"type": "string", "enum": list(forms.JOB_TYPES), "default": "convert"},
    "createArchive": _flag(False, "Also bundle all outputs into one zip."),
    "saveToStorage": _flag(True, "Accepted for Convertly clients: jobs always store sources."),
    "callbackUrl": {
        "type": "string",
        "format": "uri",
        "maxLength": forms.MAX_URL_CHARS,
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
    text_or_null = nullable(STRING)
    return {
        "Error": _object(
            None,
            error={"type": "string", "minLength": 1, "description": "What to do about it."},
            code={"type": "string", "enum": _REASONS},
            detail={
                "type": "string",
                "description": "More about the error in words; empty when `error` says it all "
                "(a string, since Convertly's PHP client casts it to one).",
            },
            fields={
                "type": "array",
                "items": _object(None, field=STRING, message=STRING),
                "description": "Every bad field of a 400, with what is wrong with it.",
            },
            meta={
                "type": "object",
                "description": "The rest of the error's data (limits, sizes, the job id...).",
            },
        ),
        "FileResult": _object(
            None,
            index=_COUNT,
            filename={
                **STRING,
                "description": "The output's name (the upload's name with the "
                "output's extension, unique in the job).",
            },
            originalFilename={**STRING, "description": "The uploaded file's name."},
            status={"type": "string", "enum": _FILE_STATUSES},
            progress=_PERCENT,
            originalSize=_COUNT,
            finalSize=nullable(_COUNT),
            savedPercent={"type": ["number", "null"], "maximum": 100},
            mimeType=text_or_null,
            format=nullable({"type": "string", "enum": _RESULT_FORMATS}),
            detectedFormat=nullable({"type": "string", "enum": list(INPUT_FAMILIES)}),
            appliedQuality=nullable(integer(0, 100)),
            width=nullable(integer(1)),
            height=nullable(integer(1)),
            duration={"type": ["number", "null"], "minimum": 0},
            keptOriginal={
                "type": "boolean",
                "description": "A compress whose re-encode was not smaller: the output is the "
                "original bytes (savedPercent 0).",
            },
            downloadUrl=nullable(_SIGNED_URL),
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
            downloadUrl=nullable(_SIGNED_URL),
            errorMessage=text_or_null,
        ),
        "ArchiveEntry": _object(
            None,
            name=STRING,
            status={"type": "string", "enum": _FILE_STATUSES},
            outputName=text_or_null,
            errorMessage=text_or_null,
        ),
        "CallbackDelivery": _object(
            ["type", "attempt", "status"],
            open_=True,
            type=STRING,
            attempt=integer(1),
            status=STRING,
            at=_time(),
        ),
        "Job": _object(
            [*_JOB_KEYS],
            jobId={"type": "string", "format": "uuid"},
            jobType={"type": "string", "enum": _JOB_TYPES},
            status={
                "type": "string",
                "enum": list(render.PUBLIC_JOB_STATUSES),
                "description": "A cancelled job is failed, with `cancelled: true`.",
            },
            totalFiles=_COUNT,
            completedFiles=_COUNT,
            failedFiles=_COUNT,
            progress=_PERCENT,
            errorMessage=text_or_null,
            cancelled={"type": "boolean"},
            cancelledAt=_time(),
            results=_object(
                None,
                files={"type": "array", "items": ref("FileResult")},
                archive=nullable(ref("Archive")),
            ),
            createdAt=_time(),
            updatedAt=_time(),
            completedAt=_time(),
            callbacks={"type": "array", "items": ref("CallbackDelivery")},
            tool={
                "type": "string",
                "enum": list(TOOLS),
                "description": "The media tool a tool job ran.",
            },
        ),
        "JobCreated": _object(
            ["jobId", "status"],
            jobId={"type": "string", "format": "uuid"},
            status={"type": "string", "enum": ["pending"]},
            warnings=_WARNINGS,
        ),
        "Pagination": _object(
            None,
            limit=integer(LIST_LIMIT[0], LIST_LIMIT[1]),
            offset=integer(0, LIST_MAX_OFFSET),
            total=_COUNT,
            hasMore={"type": "boolean"},
        ),
        "JobList": _object(
            None, jobs={"type": "array", "items": ref("Job")}, pagination=ref("Pagination")
        ),
        "SyncFile": _object(
            None,
            filename=STRING,
            originalFilename=STRING,
            originalSize=_COUNT,
            finalSize=_COUNT,
            savedPercent={"type": ["number", "null"], "maximum": 100},
            mimeType=STRING,
            downloadUrl={"type": "string", "description": "The output as a data: URL."},
            appliedQuality=nullable(integer(0, 100)),
            keptOriginal={"type": "boolean"},
        ),
        "SyncFailedFile": _object(
            None,
            filename=STRING,
            originalFilename=STRING,
            originalSize=_COUNT,
            error=STRING,
            code={"type": "string", "enum": _REASONS},
        ),
        "SyncResult": _object(
            ["files", "storage"],
            files={
                "type": "array",
                "items": {"anyOf": [ref("SyncFile"), ref("SyncFailedFile")]},
            },
            storage=_object(None, saved={"type": "boolean"}),
            warnings=_WARNINGS,
        ),
        "Health": _object(None, status={"type": "string", "enum": ["ok", "unavailable"]}),
        "ToolJobCreated": _object(
            ["jobId", "status", "tool"],
            jobId={"type": "string", "format": "uuid"},
            status={"type": "string", "enum": list(render.PUBLIC_JOB_STATUSES)},
            tool={"type": "string", "enum": [*TOOLS, "transfer"]},
            warnings=_WARNINGS,
        ),
        "MediaDocument": _object(
            None,
            media=_object(
                None,
                open_=True,
                filename=STRING,
                mimeType=STRING,
                sizeBytes=_COUNT,
                kind={"type": "string", "enum": ["video", "audio", "image"]},
                format=STRING,
                container=STRING,
                width=nullable(integer(1)),
                height=nullable(integer(1)),
                duration={"type": ["number", "null"], "minimum": 0},
                bitrateKbps=nullable(_COUNT),
                streams={"type": "array", "items": {"type": "object"}},
            ),
        ),
    }
