"""Form validation for the conversion routes: every bad field is reported in one 400.

Per-file options come from one table. Each option has a single form (`format`) applying to every
file and a JSON-array form (`formats`) with exactly one entry per file; an array entry wins over
the single form, and a null or empty entry falls back to it. Unset options keep the defaults of
`ConversionOptions`. Unknown fields are ignored: Convertly clients send extras.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS
from mesh.options import PRESETS, ConversionOptions, Mode
from services.gateway.multipart import ParsedForm, UploadedFile

MAX_PIXELS_PER_SIDE = 65535
MAX_CALLBACK_URL_CHARS = 2048
MAX_CALLBACK_SECRET_CHARS = 1024
_INTEGER = re.compile(r"\+?\d{1,19}")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


class _BadValueError(Exception):
    """A value the client can fix; the message completes "The field 'x' ..."."""


def _whole(value: object, low: int, high: int) -> int:
    number: int | None = None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not low <= number <= high:
        raise _BadValueError(f"must be a whole number from {low} to {high}")
    return number


def _one_of(value: object, choices: tuple[str, ...]) -> str:
    name = value.strip().lower() if isinstance(value, str) else None
    if name is None or name not in choices:
        raise _BadValueError(f"must be one of {', '.join(choices)}")
    return name


_TRUE = ("true", "1")
_FALSE = ("false", "0")


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    raise _BadValueError("must be true or false (or 1 or 0)")


def _format(value: object) -> str:
    return _one_of(value, tuple(OUTPUT_FORMATS))


def _preset(value: object) -> str:
    return _one_of(value, tuple(PRESETS))


def _mode(value: object) -> Mode:
    return Mode(_one_of(value, tuple(mode.value for mode in Mode)))


def _pixels(value: object) -> int:
    return _whole(value, 1, MAX_PIXELS_PER_SIDE)


def _compression(value: object) -> int:
    return _whole(value, 1, 100)


def _byte_count(value: object) -> int:
    return _whole(value, 1, 2**63 - 1)


@dataclass(frozen=True)
class _Option:
    attr: str  # the ConversionOptions field
    name: str  # single form
    array: str  # per-file JSON-array form
    parse: Callable[[object], object]
    alias: str = ""  # read when `name` is absent, on routes that allow aliases


# API.md "Jobs": one row per per-file option. Defaults live in ConversionOptions.
_OPTIONS: tuple[_Option, ...] = (
    _Option("format", "format", "formats", _format),
    _Option("resize", "resize", "resizes", _preset),
    _Option("resize_width", "resizeWidth", "resizeWidths", _pixels),
    _Option("resize_height", "resizeHeight", "resizeHeights", _pixels),
    _Option("compression", "compression", "compressions", _compression, alias="quality"),
    _Option("auto_orient", "autoOrient", "autoOrients", _boolean),
    _Option("mono", "mono", "monos", _boolean),
    _Option("mode", "mode", "modes", _mode),
    _Option("target_bytes", "targetBytes", "targetByteValues", _byte_count),
    _Option("lossless", "lossless", "losslessValues", _boolean),
    _Option("strip_metadata", "stripMetadata", "stripMetadataValues", _boolean),
)
_OPTION_FOR = {option.attr: option for option in _OPTIONS}


@dataclass(frozen=True)
class _Requirement:
    """`attr` must be set (non-zero) for a file whenever `applies` holds for its options."""

    attr: str
    applies: Callable[[ConversionOptions], bool]
    problem: str


_FORMAT_REQUIRED = _Requirement(
    "format", lambda _: True, f"is required for convert: one of {', '.join(OUTPUT_FORMATS)}"
)
_SHARED_REQUIREMENTS = (
    _Requirement("resize_width", lambda o: o.resize == "width", "is required when resize is width"),
    _Requirement(
        "resize_height", lambda o: o.resize == "height", "is required when resize is height"
    ),
    _Requirement(
        "target_bytes",
        lambda o: o.mode is Mode.TARGET_SIZE,
        "must be a positive number of bytes when mode is target-size",
    ),
)


@dataclass(frozen=True)
class _Route:
    options: tuple[_Option, ...]
    requirements: tuple[_Requirement, ...]
    quality_alias: bool


_CONVERT = _Route(_OPTIONS, (_FORMAT_REQUIRED, *_SHARED_REQUIREMENTS), quality_alias=False)
# Compress keeps the input's format unless one is given; `quality` stands for `compression`.
_COMPRESS_JOB = _Route(_OPTIONS, _SHARED_REQUIREMENTS, quality_alias=True)
_COMPRESS_SYNC = _Route(
    tuple(
        _OPTION_FOR[attr]
        for attr in ("compression", "mode", "target_bytes", "lossless", "strip_metadata")
    ),
    _SHARED_REQUIREMENTS,
    quality_alias=True,
)
_JOB_ROUTES = {"convert": _CONVERT, "compress": _COMPRESS_JOB}


@dataclass
class _Errors:
    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, problem: str) -> None:
        problems = self.fields.setdefault(name, [])
        if problem not in problems:
            problems.append(problem)

    def raise_if_any(self) -> None:
        if not self.fields:
            return
        detail = {name: "; ".join(problems) for name, problems in self.fields.items()}
        if len(detail) == 1:
            ((name, problem),) = detail.items()
            message = f"The field '{name}' {problem}."
        else:
            message = f"{len(detail)} fields are invalid: {', '.join(detail)}."
        raise MeshError(Reason.INVALID_FIELD, message, fields=detail)


def _given(form: ParsedForm, name: str) -> str | None:
    value = form.last(name)
    return value if value is not None and value.strip() else None


def _single(form: ParsedForm, option: _Option, route: _Route, errors: _Errors) -> object:
    name = option.name
    raw = _given(form, name)
    if raw is None and route.quality_alias and option.alias:
        name = option.alias
        raw = _given(form, name)
    if raw is None:
        return None
    try:
        return option.parse(raw)
    except _BadValueError as problem:
        errors.add(name, str(problem))
        return None


def _entries(form: ParsedForm, option: _Option, count: int, errors: _Errors) -> list[object]:
    """The array form parsed per file; all None when absent or unusable."""
    absent: list[object] = [None] * count
    raw = _given(form, option.array)
    if raw is None:
        return absent
    try:
        values = json.loads(raw)
    except (ValueError, RecursionError):
        values = None
    if not isinstance(values, list):
        errors.add(option.array, "must be a JSON array with one entry per file")
        return absent
    if not count:
        return absent  # the missing files are reported on their own
    if len(values) != count:
        errors.add(option.array, f"must have {count} {_entries_word(count)}, one per file")
        return absent
    parsed: list[object] = []
    for index, value in enumerate(values):
        try:
            parsed.append(None if value in (None, "") else option.parse(value))
        except _BadValueError as problem:
            errors.add(option.array, f"entry {index + 1} {problem}")
            parsed.append(None)
    return parsed


def _entries_word(count: int) -> str:
    return "entry" if count == 1 else "entries"


def _per_file(form: ParsedForm, route: _Route, errors: _Errors) -> list[ConversionOptions]:
    count = len(form.files)
    settings: list[dict[str, Any]] = [{} for _ in range(count)]
    for option in route.options:
        single = _single(form, option, route, errors)
        for chosen, entry in zip(settings, _entries(form, option, count, errors), strict=True):
            value = single if entry is None else entry
            if value is not None:
                chosen[option.attr] = value
    options = [replace(ConversionOptions(), **chosen) for chosen in settings]
    _check_requirements(form, options, route, errors)
    return options


def _check_requirements(
    form: ParsedForm, options: list[ConversionOptions], route: _Route, errors: _Errors
) -> None:
    for requirement in route.requirements:
        option = _OPTION_FOR[requirement.attr]
        if option.name in errors.fields or option.array in errors.fields:
            continue  # already reported as unparseable
        per_file = _given(form, option.array) is not None
        for index, chosen in enumerate(options):
            if requirement.applies(chosen) and not getattr(chosen, requirement.attr):
                if per_file:
                    errors.add(option.array, f"entry {index + 1} {requirement.problem}")
                else:
                    errors.add(option.name, requirement.problem)


def _files(
    form: ParsedForm, route: _Route, errors: _Errors
) -> tuple[tuple[UploadedFile, ConversionOptions], ...]:
    if not form.files:
        errors.add("files", "must carry at least one file (parts named files, files[] or file)")
    return tuple(zip(form.files, _per_file(form, route, errors), strict=True))


def _flag(form: ParsedForm, name: str, default: bool, errors: _Errors) -> bool:
    raw = _given(form, name)
    if raw is None:
        return default
    try:
        return _boolean(raw)
    except _BadValueError as problem:
        errors.add(name, str(problem))
        return default


def _callback_url(form: ParsedForm, errors: _Errors) -> str:
    url = (_given(form, "callbackUrl") or "").strip()
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


def _callback_secret(form: ParsedForm, errors: _Errors) -> str:
    secret = form.last("callbackSecret") or ""
    if len(secret) > MAX_CALLBACK_SECRET_CHARS:
        errors.add("callbackSecret", f"must be at most {MAX_CALLBACK_SECRET_CHARS} characters")
    return secret


@dataclass(frozen=True)
class JobForm:
    job_type: str  # "convert" | "compress"
    create_archive: bool
    files: tuple[tuple[UploadedFile, ConversionOptions], ...]
    callback_url: str  # "" when absent; the SSRF check happens where it is used
    callback_secret: str


@dataclass(frozen=True)
class SyncForm:
    """A synchronous /api/convert or /api/compress request."""

    files: tuple[tuple[UploadedFile, ConversionOptions], ...]


def parse_job_form(form: ParsedForm) -> JobForm:
    """POST /api/jobs. `saveToStorage` is validated as a boolean and otherwise ignored: jobs
    always store their sources, so false is accepted rather than refused."""
    errors = _Errors()
    job_type = _single_choice(form, "jobType", ("convert", "compress"), errors)
    # With an invalid jobType, validate as compress so `format` is not reported as missing too.
    route = _JOB_ROUTES.get(job_type, _COMPRESS_JOB)
    create_archive = _flag(form, "createArchive", False, errors)
    _flag(form, "saveToStorage", True, errors)
    callback_url = _callback_url(form, errors)
    callback_secret = _callback_secret(form, errors)
    files = _files(form, route, errors)
    errors.raise_if_any()
    return JobForm(job_type, create_archive, files, callback_url, callback_secret)


def _single_choice(form: ParsedForm, name: str, choices: tuple[str, ...], errors: _Errors) -> str:
    raw = _given(form, name)
    if raw is None:
        return choices[0]
    try:
        return _one_of(raw, choices)
    except _BadValueError as problem:
        errors.add(name, str(problem))
        return ""


def _sync_form(form: ParsedForm, route: _Route) -> SyncForm:
    errors = _Errors()
    files = _files(form, route, errors)
    errors.raise_if_any()
    return SyncForm(files)


def parse_convert_form(form: ParsedForm) -> SyncForm:
    """POST /api/convert: the job's convert fields, without jobType and createArchive."""
    return _sync_form(form, _CONVERT)


def parse_compress_form(form: ParsedForm) -> SyncForm:
    """POST /api/compress: mode, quality, targetBytes, lossless, stripMetadata (and their
    per-file forms); the output keeps each input's format."""
    return _sync_form(form, _COMPRESS_SYNC)
