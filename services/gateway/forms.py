"""The conversion routes' forms, validated whole: every bad field is reported in one 400.

Per-file options are read by `file_options`; this module adds the route-level fields, the
at-least-one-non-empty-file rule and the check of field names. Convertly clients send extras,
so a field the route does not read is no error: it is named in the answer's `warnings`. A
misspelling that differs from a real field only in case (`jobtype`) is a 400 naming the right
spelling, since ignoring it would silently run a different job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh.errors import MeshError, Reason
from mesh.fields import BadValueError, FieldErrors, flag, one_of
from mesh.jobs.v1 import jobs_pb2
from mesh.options import ConversionOptions
from services.gateway.file_options import (
    COMPRESS_JOB,
    COMPRESS_SYNC,
    CONVERT,
    OptionSet,
    read_file_options,
)
from services.gateway.multipart import FILE_FIELD, ParsedForm
from services.gateway.uploads import UploadedFile

MAX_URL_CHARS = 2048
MAX_CALLBACK_SECRET_CHARS = 1024
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_JOB_TYPES = {"convert": CONVERT, "compress": COMPRESS_JOB}
SOURCE_URL = "sourceUrl"
CLOUD_SOURCE = "cloudSource"
CLOUD_PROVIDERS = "Google Drive, Amazon S3 and Dropbox"
# Route-level fields of POST /api/jobs (API.md "Jobs"), beside the per-file options.
JOB_FIELD_NAMES = frozenset(
    {"jobType", "createArchive", "saveToStorage", "callbackUrl", "callbackSecret", SOURCE_URL}
)
SAVE_TO_STORAGE = "saveToStorage"
JOB_TYPES = {"convert": jobs_pb2.JOB_TYPE_CONVERT, "compress": jobs_pb2.JOB_TYPE_COMPRESS}


@dataclass(frozen=True)
class SourceUrl:
    """A file given as `sourceUrl`: the orchestrator fetches it (the gateway never does)."""

    url: str


Source = UploadedFile | SourceUrl
FileWithOptions = tuple[Source, ConversionOptions]


def file_spec(source: Source, options: ConversionOptions | None = None) -> jobs_pb2.FileSpec:
    spec = jobs_pb2.FileSpec(options=options.to_proto() if options is not None else None)
    if isinstance(source, SourceUrl):
        spec.source_url = source.url
    else:
        spec.blob_id, spec.filename = source.blob_id, source.filename
    return spec


def refuse_cloud_source(form: ParsedForm) -> None:
    """`cloudSource` names a storage provider convertmesh does not read from: 501, never a
    silent fallback."""
    if CLOUD_SOURCE in form.fields:
        raise not_offered_cloud_source()


def not_offered_cloud_source() -> MeshError:
    return MeshError(
        Reason.NOT_IMPLEMENTED,
        f"cloudSource ({CLOUD_PROVIDERS}) is not offered by convertmesh: give the file as an "
        "upload or as a sourceUrl (an http or https link it can fetch).",
        feature=CLOUD_SOURCE,
    )


@dataclass(frozen=True)
class JobForm:
    """A validated request of any conversion route (the sync ones never set the job-only
    fields)."""

    job_type: str  # "convert" | "compress"
    create_archive: bool
    files: tuple[FileWithOptions, ...]
    callback_url: str  # "" when absent; the SSRF check happens where it is used
    callback_secret: str
    # Sentences about fields that were sent but not used, for the answer's `warnings`.
    warnings: tuple[str, ...] = ()

    @property
    def uploads(self) -> tuple[UploadedFile, ...]:
        return tuple(source for source, _ in self.files if isinstance(source, UploadedFile))

    def job_request(self) -> jobs_pb2.CreateJobRequest:
        """The job, without its tenant and idempotency key."""
        return jobs_pb2.CreateJobRequest(
            job_type=JOB_TYPES[self.job_type],
            create_archive=self.create_archive,
            callback_url=self.callback_url,
            callback_secret=self.callback_secret,
            files=[file_spec(source, options) for source, options in self.files],
        )


def read_sources(
    form: ParsedForm, uploads: tuple[UploadedFile, ...], errors: FieldErrors, noun: str
) -> tuple[Source, ...]:
    """The uploaded files, or the one `sourceUrl`: never both, never neither, never empty."""
    url = url_field(form, SOURCE_URL, errors)
    if url and uploads:
        errors.add(SOURCE_URL, f"must not be given with uploaded files: send {noun} or a sourceUrl")
    if not url and not uploads:
        errors.add(
            "files",
            f"must carry {noun} (parts named files, files[], files[N], files.items or file), "
            "or give a sourceUrl",
        )
    empty = [uploaded.filename for uploaded in uploads if uploaded.size == 0]
    if empty:
        names = ", ".join(f"'{name}'" for name in empty)
        errors.add("files", f"holds an empty file (0 bytes): {names}")
    return (SourceUrl(url),) if url and not uploads else uploads


def _files(form: ParsedForm, using: OptionSet, errors: FieldErrors) -> tuple[FileWithOptions, ...]:
    sources = read_sources(form, form.files, errors, "at least one file")
    options = read_file_options(form, using, errors, count=len(sources))
    return tuple(zip(sources, options, strict=True))


def field_names(
    form: ParsedForm, known: frozenset[str], route: str, errors: FieldErrors
) -> tuple[str, ...]:
    """Warnings for the fields this route does not read; a case-only misspelling of a field
    it does read is an error."""
    by_lower = {name.lower(): name for name in known}
    warnings: list[str] = []
    for name in form.fields:
        if name in known:
            continue
        spelt = by_lower.get(name.lower())
        if spelt is not None:
            errors.add(name, f"is not a field; did you mean '{spelt}'?")
        elif FILE_FIELD.fullmatch(name):
            warnings.append(f"The part '{name}' was sent as text, not as a file, and was ignored.")
        else:
            warnings.append(f"The field '{name}' is not read by {route} and was ignored.")
    return tuple(warnings)


def read_flag(form: ParsedForm, name: str, default: bool, errors: FieldErrors) -> bool:
    raw = form.given(name)
    if raw is None:
        return default
    try:
        return flag(raw)
    except BadValueError as problem:
        errors.add(name, str(problem))
        return default


def _job_type(form: ParsedForm, errors: FieldErrors) -> str:
    raw = form.given("jobType")
    if raw is None:
        return "convert"
    try:
        return one_of(*_JOB_TYPES)(raw)
    except BadValueError as problem:
        errors.add("jobType", str(problem))
        return ""


def url_field(form: ParsedForm, name: str, errors: FieldErrors) -> str:
    """An http(s) URL field, checked for syntax only: which addresses it may reach is the
    orchestrator's call, where the connection is made."""
    url = (form.given(name) or "").strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        usable = False
    if not usable or len(url) > MAX_URL_CHARS or _URL_FORBIDDEN.search(url):
        errors.add(name, f"must be an http or https URL of at most {MAX_URL_CHARS} characters")
    return url


def _callback_secret(form: ParsedForm, errors: FieldErrors) -> str:
    secret = form.last("callbackSecret") or ""
    if len(secret) > MAX_CALLBACK_SECRET_CHARS:
        errors.add("callbackSecret", f"must be at most {MAX_CALLBACK_SECRET_CHARS} characters")
    return secret


def parse_job_form(form: ParsedForm) -> JobForm:
    """POST /api/jobs. `saveToStorage` is checked to be a boolean and otherwise ignored: jobs
    always store their sources, so false is accepted rather than refused."""
    refuse_cloud_source(form)
    errors = FieldErrors()
    job_type = _job_type(form, errors)
    # With an invalid or misspelt jobType, read options as compress so that a missing format
    # is not reported too.
    misspelt = any(name.lower() == "jobtype" and name != "jobType" for name in form.fields)
    using = COMPRESS_JOB if misspelt else _JOB_TYPES.get(job_type, COMPRESS_JOB)
    warnings = field_names(form, JOB_FIELD_NAMES | using.names, "POST /api/jobs", errors)
    create_archive = read_flag(form, "createArchive", False, errors)
    read_flag(form, SAVE_TO_STORAGE, True, errors)
    callback_url = url_field(form, "callbackUrl", errors)
    callback_secret = _callback_secret(form, errors)
    files = _files(form, using, errors)
    errors.raise_if_any()
    return JobForm(job_type, create_archive, files, callback_url, callback_secret, warnings)


def _sync_form(form: ParsedForm, using: OptionSet, job_type: str) -> JobForm:
    route = f"POST /api/{job_type}"
    refuse_cloud_source(form)
    errors = FieldErrors()
    warnings = field_names(form, using.names | {SAVE_TO_STORAGE, SOURCE_URL}, route, errors)
    if read_flag(form, SAVE_TO_STORAGE, False, errors):
        warnings += (
            f"saveToStorage is not supported by {route}: outputs come back inline as data: "
            "URLs and nothing is stored. Use POST /api/jobs to keep them.",
        )
    files = _files(form, using, errors)
    errors.raise_if_any()
    return JobForm(job_type, False, files, "", "", warnings)


def parse_convert_form(form: ParsedForm) -> JobForm:
    """POST /api/convert: the job's convert fields, without jobType and createArchive."""
    return _sync_form(form, CONVERT, "convert")


def parse_compress_form(form: ParsedForm) -> JobForm:
    """POST /api/compress: mode, quality, targetBytes, lossless, stripMetadata (and their
    per-file forms); the output keeps each input's format."""
    return _sync_form(form, COMPRESS_SYNC, "compress")
