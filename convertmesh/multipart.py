"""A multipart/form-data body streamed from files on disk, never held whole in memory.

The body knows its exact length up front (so the server can refuse an oversized upload from
the `Content-Length` alone), can be iterated more than once (each retry sends it anew), and
reports how many bytes of each file have gone out.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from convertmesh.errors import InvalidRequestError

CHUNK_BYTES = 1024 * 1024

# (file index, bytes of that file sent so far, its size)
UploadProgress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class FilePart:
    field: str  # the part name: files, file, watermarkFile...
    path: Path
    filename: str
    content_type: str
    size: int

    @classmethod
    def of(cls, field: str, path: str | os.PathLike[str]) -> FilePart:
        resolved = Path(path)
        try:
            size = resolved.stat().st_size
        except OSError as error:
            raise InvalidRequestError(f"Cannot read {resolved}: {error.strerror}.") from None
        if not resolved.is_file():
            raise InvalidRequestError(f"{resolved} is not a file.")
        guessed = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        return cls(field, resolved, resolved.name, guessed, size)


def _quoted(value: str) -> str:
    """A header parameter value as browsers send it: UTF-8, with `"` and line breaks escaped."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        files: Sequence[FilePart],
        on_progress: UploadProgress | None = None,
    ) -> None:
        self.boundary = secrets.token_hex(16)
        self.files = tuple(files)
        self.on_progress = on_progress
        self._fields = b"".join(
            self._head(f'name="{_quoted(name)}"', None) + value.encode() + b"\r\n"
            for name, value in fields
        )
        self._file_heads = [
            self._head(
                f'name="{_quoted(part.field)}"; filename="{_quoted(part.filename)}"',
                part.content_type,
            )
            for part in self.files
        ]
        self._tail = f"--{self.boundary}--\r\n".encode()

    def _head(self, disposition: str, content_type: str | None) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Disposition: form-data; {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        files = sum(
            len(head) + part.size + 2
            for head, part in zip(self._file_heads, self.files, strict=True)
        )
        return len(self._fields) + files + len(self._tail)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type, "Content-Length": str(self.content_length)}

    def _report(self, index: int, sent: int) -> None:
        if self.on_progress is not None:
            self.on_progress(index, sent, self.files[index].size)

    def __iter__(self) -> Iterator[bytes]:
        yield self._fields
        for index, (head, part) in enumerate(zip(self._file_heads, self.files, strict=True)):
            yield head
            self._report(index, 0)
            sent = 0
            with part.path.open("rb") as source:
                while sent < part.size and (chunk := source.read(CHUNK_BYTES)):
                    chunk = chunk[: part.size - sent]
                    sent += len(chunk)
                    yield chunk
                    self._report(index, sent)
            self._check_complete(part, sent)
            yield b"\r\n"
        yield self._tail

    async def async_chunks(self) -> AsyncIterator[bytes]:
        yield self._fields
        for index, (head, part) in enumerate(zip(self._file_heads, self.files, strict=True)):
            yield head
            self._report(index, 0)
            sent = 0
            source = await asyncio.to_thread(part.path.open, "rb")
            try:
                while sent < part.size and (
                    chunk := await asyncio.to_thread(source.read, CHUNK_BYTES)
                ):
                    chunk = chunk[: part.size - sent]
                    sent += len(chunk)
                    yield chunk
                    self._report(index, sent)
            finally:
                await asyncio.to_thread(source.close)
            self._check_complete(part, sent)
            yield b"\r\n"
        yield self._tail

    @staticmethod
    def _check_complete(part: FilePart, sent: int) -> None:
        # The length was announced; a file that shrank meanwhile cannot be sent honestly.
        if sent != part.size:
            raise InvalidRequestError(f"{part.path} changed size while it was being uploaded.")
