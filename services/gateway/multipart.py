"""Streaming multipart/form-data: text fields are collected, file parts are piped to an upload.
A body without files (a sourceUrl instead) may also be JSON or URL-encoded: its fields only.

The body is read from `request.stream()` and fed to python-multipart's push parser. Each file
part's bytes go to the caller's `Upload` as they arrive (see `uploads.UploadPipe`); nothing is
buffered whole or spooled to disk.

Cleanup contract: when `read_multipart` fails (a limit, a malformed body, a failed upload, a
disconnect), it cancels the upload in flight and calls `discard` for every blob already stored
before re-raising. Once it has returned, the blobs belong to the caller: `read_form` also
discards them when validation fails, and `discard_uploads` is there for later failures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from mesh.errors import MeshError, Reason
from mesh.formats import SNIFF_BYTES
from services.gateway.early import Vet
from services.gateway.filenames import display_filename
from services.gateway.uploads import (
    Discard,
    Upload,
    UploadedFile,
    UploadPipe,
    discard_blobs,
    discard_uploads,
)

if TYPE_CHECKING:
    # Only a typing construct in python-multipart: it does not exist at run time.
    from python_multipart.multipart import MultipartCallbacks

MiB = 1024 * 1024
# Part names that carry the job's files (API.md Conventions): files, files[], files[N], file,
# and `files.items` / `files.items[N]`, the name Convertly's own reference page gives in its
# curl example. Other file parts are ignored.
FILE_FIELD = re.compile(r"files(\.items)?(\[\d*\])?|file")
# RFC 5987 `filename*=charset'language'percent-encoded`, which python-multipart drops.
_EXTENDED_FILENAME = re.compile(
    r";\s*filename\*\s*=\s*\"?([A-Za-z0-9_-]+)'[^']*'([^\s;\"]*)\"?", re.IGNORECASE
)
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_FIELDS_ONLY = frozenset({b"application/json", b"application/x-www-form-urlencoded"})


@dataclass(frozen=True)
class FormLimits:
    """Bounds on one request body. Sync routes pass smaller byte limits than jobs."""

    max_files: int = 100
    max_file_bytes: int = 2048 * MiB
    max_body_bytes: int = 4096 * MiB
    max_field_bytes: int = 64 * 1024
    max_fields: int = 1000
    # Chunks buffered between the request and one upload: the memory a slow upload can cost.
    pipe_depth: int = 4


DEFAULT_LIMITS = FormLimits()


@dataclass(frozen=True)
class ParsedForm:
    fields: dict[str, list[str]]
    files: tuple[UploadedFile, ...]

    def last(self, name: str) -> str | None:
        """The field's last value, like Starlette's FormData.get."""
        values = self.fields.get(name)
        return values[-1] if values else None

    def given(self, name: str) -> str | None:
        """The field's last value; an empty one counts as absent, as HTML forms send them."""
        value = self.last(name)
        return value if value is not None and value.strip() else None


def _too_large(message: str, limit: str, maximum: int) -> MeshError:
    return MeshError(Reason.TOO_LARGE, message, limit=limit, max=maximum)


def _body_too_large(limits: FormLimits) -> MeshError:
    limit = limits.max_body_bytes
    return _too_large(f"The request body is larger than {limit} bytes.", "maxBodyBytes", limit)


def _malformed(problem: str) -> MeshError:
    return MeshError(
        Reason.INVALID_FIELD,
        "The request body is not valid multipart/form-data.",
        fields={"body": problem},
    )


@dataclass
class _TextPart:
    name: str
    data: bytearray


@dataclass
class _FilePart:
    name: str
    filename: str
    content_type: str
    # Browsers send an empty file name and no bytes for a file input left empty: no file at all.
    # The upload therefore starts with the first byte, or at the end for a named empty file.
    named: bool
    pipe: UploadPipe | None = None
    size: int = 0
    # The first bytes, held back until the route's `Vet` has seen them (None: passed on).
    head: bytearray | None = None


class _SkippedPart:
    """A file under a name that is not a file field: read past, stored nowhere."""


_Part = _TextPart | _FilePart | _SkippedPart


@dataclass(frozen=True)
class _PartStart:
    headers: dict[bytes, bytes]


# Events the synchronous parser callbacks leave for the async side: a part's headers, a piece
# of its data, or None when it ends.
_Event = _PartStart | bytes | None


class _Events:
    def __init__(self) -> None:
        self.pending: list[_Event] = []
        self.finished = False
        self._headers: dict[bytes, bytes] = {}
        self._name = bytearray()
        self._value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.pending.append(_PartStart(dict(self._headers))),
            "on_part_data": lambda data, start, end: self.pending.append(data[start:end]),
            "on_part_end": lambda: self.pending.append(None),
            "on_end": self._end,
        }

    def _header_end(self) -> None:
        self._headers[bytes(self._name).strip().lower()] = bytes(self._value).strip()
        self._name.clear()
        self._value.clear()

    def _end(self) -> None:
        self.finished = True

    def take(self) -> list[_Event]:
        events, self.pending = self.pending, []
        return events


class _Reader:
    def __init__(
        self,
        upload: Upload,
        limits: FormLimits,
        extra_files: frozenset[str],
        vet: Vet | None = None,
    ) -> None:
        self.upload = upload
        self.limits = limits
        self.extra_files = extra_files
        self.vet = vet
        self.fields: dict[str, list[str]] = {}
        self.files: list[UploadedFile] = []
        self.part: _Part | None = None
        self.field_count = 0

    async def read(self, request: Request, boundary: bytes) -> None:
        events = _Events()
        try:
            parser = MultipartParser(boundary, events.callbacks())
        except FormParserError as error:
            raise _malformed("the boundary is invalid") from error
        body_bytes = 0
        async for chunk in request.stream():
            body_bytes += len(chunk)
            if body_bytes > self.limits.max_body_bytes:
                raise _body_too_large(self.limits)
            try:
                parser.write(chunk)
            except FormParserError as error:
                raise _malformed("the parts could not be parsed") from error
            for event in events.take():
                await self._handle(event)
        if not events.finished:
            raise _malformed("the body ended before the closing boundary")

    async def _handle(self, event: _Event) -> None:
        if isinstance(event, _PartStart):
            self.part = self._begin(event.headers)
        elif event is None:
            await self._end()
        else:
            await self._data(event)

    def _begin(self, headers: dict[bytes, bytes]) -> _Part:
        raw_disposition = headers.get(b"content-disposition", b"")
        disposition, options = parse_options_header(raw_disposition)
        if disposition != b"form-data" or not options.get(b"name"):
            raise _malformed("a part has no form-data name")
        # Headers are raw bytes (latin-1 round trip); clients send UTF-8 names.
        name = options[b"name"].decode("utf-8", "replace")
        extended = extended_filename(raw_disposition)
        if extended is not None:
            options[b"filename"] = extended.encode()
        is_file = b"filename" in options
        if not is_file or not (FILE_FIELD.fullmatch(name) or name in self.extra_files):
            # Text fields and file parts under other names (skipped) count alike: each costs
            # a part's parsing, and 100,000 skipped ones were once accepted.
            self.field_count += 1
            if self.field_count > self.limits.max_fields:
                maximum = self.limits.max_fields
                raise _too_large(f"The form has more than {maximum} fields.", "maxFields", maximum)
            return _SkippedPart() if is_file else _TextPart(name, bytearray())
        if len(self.files) >= self.limits.max_files:
            maximum = self.limits.max_files
            raise _too_large(f"A request may carry at most {maximum} files.", "maxFiles", maximum)
        raw_filename = options[b"filename"].decode("utf-8", "replace")
        content_type = _content_type(headers.get(b"content-type", b""))
        head = bytearray() if self.vet is not None and name not in self.extra_files else None
        return _FilePart(
            name, display_filename(raw_filename), content_type, bool(raw_filename), head=head
        )

    def _pipe(self, part: _FilePart) -> UploadPipe:
        if part.pipe is None:
            depth = self.limits.pipe_depth
            part.pipe = UploadPipe(self.upload, part.filename, part.content_type, depth)
        return part.pipe

    async def _data(self, data: bytes) -> None:
        part = self.part
        if isinstance(part, _TextPart):
            part.data.extend(data)
            if len(part.data) > self.limits.max_field_bytes:
                limit = self.limits.max_field_bytes
                message = f"The field '{part.name}' is larger than {limit} bytes."
                raise _too_large(message, "maxFieldBytes", limit)
        elif isinstance(part, _FilePart):
            part.size += len(data)
            if part.size > self.limits.max_file_bytes:
                limit = self.limits.max_file_bytes
                message = f"The file '{part.filename}' is larger than {limit} bytes."
                raise _too_large(message, "maxFileBytes", limit)
            if part.head is not None:
                part.head.extend(data)
                if len(part.head) < SNIFF_BYTES:
                    return
                data = self._vetted(part)
            await self._pipe(part).send(data)

    def _vetted(self, part: _FilePart) -> bytes:
        """The held-back first bytes, once the route's `Vet` accepts them (it raises)."""
        assert part.head is not None and self.vet is not None
        head, part.head = bytes(part.head), None
        self.vet(self.fields, len(self.files), head)
        return head

    async def _end(self) -> None:
        part = self.part
        if isinstance(part, _TextPart):
            try:
                value = part.data.decode("utf-8")
            except UnicodeDecodeError as error:
                fields = {part.name: "must be UTF-8 text"}
                raise MeshError(
                    Reason.INVALID_FIELD, "A field is not UTF-8 text.", fields=fields
                ) from error
            self.fields.setdefault(part.name, []).append(value)
        elif isinstance(part, _FilePart) and (part.named or part.pipe is not None or part.head):
            if part.head:
                await self._pipe(part).send(self._vetted(part))
            blob = await self._pipe(part).close()
            self.files.append(
                UploadedFile(
                    part.name,
                    part.filename,
                    part.content_type,
                    blob.blob_id,
                    blob.size,
                    blob.detected_format,
                    blob.family,
                )
            )
        self.part = None

    async def abandon(self, discard: Discard) -> None:
        blob_ids = [uploaded.blob_id for uploaded in self.files]
        if isinstance(self.part, _FilePart) and self.part.pipe is not None:
            stray = await self.part.pipe.abort()
            if stray is not None:
                blob_ids.append(stray)
        await discard_blobs(blob_ids, discard)


def extended_filename(disposition: bytes) -> str | None:
    """The RFC 5987 `filename*` of a Content-Disposition, decoded; None when absent. It wins
    over a plain `filename`, which senders of both use as an ASCII fallback."""
    match = _EXTENDED_FILENAME.search(disposition.decode("latin-1"))
    if match is None:
        return None
    charset, encoded = match.groups()
    codec = "latin-1" if charset.lower() in ("iso-8859-1", "latin1", "latin-1") else "utf-8"
    return unquote_to_bytes(encoded).decode(codec, "replace")


def _content_type(raw: bytes) -> str:
    media_type = raw.decode("latin-1").split(";", 1)[0].strip().lower()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else _DEFAULT_CONTENT_TYPE


def _boundary(request: Request) -> bytes:
    media_type, params = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise MeshError(
            Reason.INVALID_FIELD,
            "Send the form as multipart/form-data (or, without files, as JSON or "
            "application/x-www-form-urlencoded).",
            fields={"Content-Type": "must be multipart/form-data with a boundary"},
        )
    return params[b"boundary"]


def _field_text(value: object) -> str:
    """A JSON value as a form would carry it: booleans as true/false, arrays as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def json_object(raw: bytes | bytearray) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else is a 400 naming the body."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise MeshError(
            Reason.INVALID_FIELD,
            "The request body is not a JSON object.",
            fields={"body": "must be a JSON object"},
        )
    return body


async def _read_fields(request: Request, media_type: bytes, limits: FormLimits) -> ParsedForm:
    """A body of fields only (a sourceUrl instead of files): JSON or URL-encoded."""
    raw = bytearray()
    limit = limits.max_field_bytes * 4
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise _too_large(
                f"The request body is larger than {limit} bytes.", "maxBodyBytes", limit
            )
    fields: dict[str, list[str]] = {}
    if media_type == b"application/json":
        for name, value in json_object(raw).items():
            if value is not None:
                fields.setdefault(str(name), []).append(_field_text(value))
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("the body is not UTF-8") from None
        for name, value in parse_qsl(text, keep_blank_values=True):
            fields.setdefault(name, []).append(value)
    if len(fields) > limits.max_fields:
        maximum = limits.max_fields
        raise _too_large(f"The form has more than {maximum} fields.", "maxFields", maximum)
    return ParsedForm(fields, ())


async def read_multipart(
    request: Request,
    upload: Upload,
    discard: Discard,
    limits: FormLimits = DEFAULT_LIMITS,
    extra_files: frozenset[str] = frozenset(),
    *,
    vet: Vet | None = None,
) -> ParsedForm:
    """Reads the whole form, storing each file through `upload` as its bytes arrive: the parts
    named as files are (FILE_FIELD), and those named in `extra_files` (watermarkFile). A body
    without files (its file given as a sourceUrl) may also come as JSON or URL-encoded. With
    `vet`, each job file's first `SNIFF_BYTES` are held back until `vet` has accepted them."""
    media_type, _ = parse_options_header(request.headers.get("content-type"))
    if media_type in _FIELDS_ONLY:
        return await _read_fields(request, media_type, limits)
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _body_too_large(limits)
    reader = _Reader(upload, limits, extra_files, vet)
    try:
        await reader.read(request, boundary)
    except BaseException:
        await reader.abandon(discard)
        raise
    return ParsedForm(reader.fields, tuple(reader.files))


T = TypeVar("T")


async def read_form(
    request: Request,
    parse: Callable[[ParsedForm], T],
    upload: Upload,
    discard: Discard,
    limits: FormLimits = DEFAULT_LIMITS,
    *,
    extra_files: frozenset[str] = frozenset(),
    vet: Vet | None = None,
) -> T:
    """Reads and validates the form; no stored blob survives a failure of either step."""
    form = await read_multipart(request, upload, discard, limits, extra_files, vet=vet)
    try:
        return parse(form)
    except BaseException:
        await discard_uploads(form.files, discard)
        raise
