"""A real Starlette app around the form reader, an in-memory blob store, and a body builder."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mesh.errors import MeshError, Reason
from mesh.formats import SNIFF_BYTES, sniff
from mesh.options import ConversionOptions
from services.gateway.forms import JobForm
from services.gateway.multipart import DEFAULT_LIMITS, FormLimits, ParsedForm, read_form
from services.gateway.uploads import UploadedFile

CHUNK = 64 * 1024
BOUNDARY = "----convertmesh-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Blob:
    blob_id: str
    size: int
    detected_format: str
    family: str


@dataclass
class MemoryBlobs:
    """Keeps a digest of each stored file; stands in for the orchestrator's UploadBlob."""

    chunk_delay: float = 0.0
    fail_on_file: int | None = None  # 1-based upload number that raises UNSUPPORTED_FORMAT
    stop_early: bool = False  # return after the first chunk without reading the rest
    digests: dict[str, str] = field(default_factory=dict)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    discarded: list[str] = field(default_factory=list)
    consumed: int = 0
    uploads_started: int = 0

    async def upload(self, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> Blob:
        self.uploads_started += 1
        number = self.uploads_started
        digest = hashlib.sha256()
        head = bytearray()
        size = 0
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            self.consumed += len(chunk)
            if len(head) < SNIFF_BYTES:
                head.extend(chunk[: SNIFF_BYTES - len(head)])
            if self.fail_on_file == number:
                raise MeshError(Reason.UNSUPPORTED_FORMAT, "That file is not supported.")
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if self.stop_early:
                break
        sniffed = sniff(bytes(head))
        blob_id = uuid.uuid4().hex
        self.digests[blob_id] = digest.hexdigest()
        self.names[blob_id] = (filename, content_type)
        return Blob(blob_id, size, sniffed.format, sniffed.family.value)

    async def discard(self, blob_id: str) -> None:
        self.discarded.append(blob_id)

    @property
    def kept(self) -> set[str]:
        return set(self.digests) - set(self.discarded)


@dataclass
class FormApp:
    blobs: MemoryBlobs
    parse: Callable[[ParsedForm], Any]
    limits: FormLimits = DEFAULT_LIMITS
    results: list[Any] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        result = await read_form(
            request, self.parse, self.blobs.upload, self.blobs.discard, self.limits
        )
        self.results.append(result)
        return JSONResponse({"ok": True})

    def client(self) -> httpx.AsyncClient:
        async def on_mesh_error(_: Request, error: Exception) -> Response:
            assert isinstance(error, MeshError)
            return JSONResponse(error.to_http_body(), status_code=error.reason.http_status)

        app = Starlette(
            routes=[Route("/form", self.endpoint, methods=["POST"])],
            exception_handlers={MeshError: on_mesh_error},
        )
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")

    async def post(self, body: bytes | AsyncIterator[bytes], **headers: str) -> httpx.Response:
        async with self.client() as client:
            return await client.post(
                "/form", content=body, headers={"content-type": CONTENT_TYPE, **headers}
            )


def identity(form: ParsedForm) -> ParsedForm:
    return form


@dataclass(frozen=True)
class Part:
    name: str
    value: bytes | str
    filename: str | bytes | None = None
    content_type: str = "application/octet-stream"

    def head(self) -> bytes:
        disposition = f'form-data; name="{self.name}"'.encode()
        if self.filename is not None:
            raw = self.filename if isinstance(self.filename, bytes) else self.filename.encode()
            disposition += b'; filename="' + raw + b'"'
            lines = [
                b"Content-Disposition: " + disposition,
                b"Content-Type: " + self.content_type.encode(),
            ]
        else:
            lines = [b"Content-Disposition: " + disposition]
        return b"--" + BOUNDARY.encode() + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"

    def data(self) -> bytes:
        return self.value if isinstance(self.value, bytes) else self.value.encode()


def field_part(name: str, value: str) -> Part:
    return Part(name, value)


def file_part(
    name: str,
    data: bytes,
    filename: str | bytes = "upload.bin",
    content_type: str = "application/octet-stream",
) -> Part:
    return Part(name, data, filename, content_type)


CLOSING = b"--" + BOUNDARY.encode() + b"--\r\n"


def multipart_body(parts: Iterable[Part]) -> bytes:
    return b"".join(part.head() + part.data() + b"\r\n" for part in parts) + CLOSING


def uploaded(index: int) -> UploadedFile:
    return UploadedFile("files", f"{index}.png", "image/png", f"blob-{index}", 100, "png", "image")


def form(files: int = 1, **fields: str | list[str]) -> ParsedForm:
    values = {name: value if isinstance(value, list) else [value] for name, value in fields.items()}
    return ParsedForm(values, tuple(uploaded(index) for index in range(files)))


def options_of(parsed: JobForm) -> list[ConversionOptions]:
    return [options for _, options in parsed.files]


def bad_fields(parse: Callable[[ParsedForm], Any], parsed: ParsedForm) -> dict[str, str]:
    with pytest.raises(MeshError) as caught:
        parse(parsed)
    assert caught.value.reason is Reason.INVALID_FIELD
    fields: dict[str, str] = caught.value.detail["fields"]
    return fields


def parsed(app: FormApp) -> ParsedForm:
    (form,) = app.results
    assert isinstance(form, ParsedForm)
    return form


async def chunked(body: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]
