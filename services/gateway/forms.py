"""The conversion routes' forms, validated whole: every bad field is reported in one 400.

Unknown fields are ignored, since Convertly clients send extras. Per-file options are read by
`file_options`; this module adds the route-level fields and the at-least-one-file rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mesh.options import ConversionOptions
from services.gateway.fields import BadValueError, FieldErrors, boolean, given, one_of
from services.gateway.file_options import (
    COMPRESS_JOB,
    COMPRESS_SYNC,
    CONVERT,
    OptionSet,
    read_file_options,
)
from services.gateway.multipart import ParsedForm
from services.gateway.uploads import UploadedFile

MAX_CALLBACK_URL_CHARS = 2048
MAX_CALLBACK_SECRET_CHARS = 1024
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_JOB_TYPES = {"convert": CONVERT, "compress": COMPRESS_JOB}

FileWithOptions = tuple[UploadedFile, ConversionOptions]


@dataclass(frozen=True)
class JobForm:
    job_type: str  # "convert" | "compress"
    create_archive: bool
    files: tuple[FileWithOptions, ...]
    callback_url: str  # "" when absent; the SSRF check happens where it is used
    callback_secret: str


@dataclass(frozen=True)
class SyncForm:
    """A synchronous /api/convert or /api/compress request."""

    files: tuple[FileWithOptions, ...]


def _files(form: ParsedForm, using: OptionSet, errors: FieldErrors) -> tuple[FileWithOptions, ...]:
    if not form.files:
        errors.add("files", "must carry at least one file (parts named files, files[] or file)")
    return tuple(zip(form.files, read_file_options(form, using, errors), strict=True))


def _flag(form: ParsedForm, name: str, default: bool, errors: FieldErrors) -> bool:
    raw = given(form, name)
    if raw is None:
        return default
    try:
        return boolean(raw)
    except BadValueError as problem:
        errors.add(name, str(problem))
        return default


def _job_type(form: ParsedForm, errors: FieldErrors) -> str:
    raw = given(form, "jobType")
    if raw is None:
        return "convert"
    try:
        return one_of(raw, tuple(_JOB_TYPES))
    except BadValueError as problem:
        errors.add("jobType", str(problem))
        return ""


def _callback_url(form: ParsedForm, errors: FieldErrors) -> str:
    url = (given(form, "callbackUrl") or "").strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        usable = False
    if not usable or len(url) > MAX_CALLBACK_URL_CHARS or _URL_FORBIDDEN.search(url):
        errors.add(
            "callbackUrl",
            f"must be an http or https URL of at most {MAX_CALLBACK_URL_CHARS} characters",
        )
    return url


def _callback_secret(form: ParsedForm, errors: FieldErrors) -> str:
    secret = form.last("callbackSecret") or ""
    if len(secret) > MAX_CALLBACK_SECRET_CHARS:
        errors.add("callbackSecret", f"must be at most {MAX_CALLBACK_SECRET_CHARS} characters")
    return secret


def parse_job_form(form: ParsedForm) -> JobForm:
    """POST /api/jobs. `saveToStorage` is checked to be a boolean and otherwise ignored: jobs
    always store their sources, so false is accepted rather than refused."""
    errors = FieldErrors()
    job_type = _job_type(form, errors)
    # With an invalid jobType, read options as compress so a missing format is not reported too.
    using = _JOB_TYPES.get(job_type, COMPRESS_JOB)
    create_archive = _flag(form, "createArchive", False, errors)
    _flag(form, "saveToStorage", True, errors)
    callback_url = _callback_url(form, errors)
    callback_secret = _callback_secret(form, errors)
    files = _files(form, using, errors)
    errors.raise_if_any()
    return JobForm(job_type, create_archive, files, callback_url, callback_secret)


def _sync_form(form: ParsedForm, using: OptionSet) -> SyncForm:
    errors = FieldErrors()
    files = _files(form, using, errors)
    errors.raise_if_any()
    return SyncForm(files)


def parse_convert_form(form: ParsedForm) -> SyncForm:
    """POST /api/convert: the job's convert fields, without jobType and createArchive."""
    return _sync_form(form, CONVERT)


def parse_compress_form(form: ParsedForm) -> SyncForm:
    """POST /api/compress: mode, quality, targetBytes, lossless, stripMetadata (and their
    per-file forms); the output keeps each input's format."""
    return _sync_form(form, COMPRESS_SYNC)
