"""Requests as Convertly clients build them, byte for byte, and answers as they read them.

- curl's `-F name=value` / `-F name=@file` (what the seed page and README show): one part per
  option, `Content-Type` from the file's extension, name quoted in `filename="..."`;
- the JS SDK's `FormData`: `files` appended once per file, then the options, array options as
  JSON strings, every value a string;
- the PHP client's request code: `files[0]`, `files[1]`, ... parts, then the options.

Each client's multipart body is built here from raw bytes with the client's own boundary
style, so a test sends exactly the parts that client sends.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class FormPart:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None
    # A raw Content-Disposition tail after the name (e.g. an RFC 5987 `filename*=`).
    disposition_tail: str | None = None

    def encode(self, boundary: str) -> bytes:
        disposition = f'form-data; name="{self.name}"'
        if self.disposition_tail is not None:
            disposition += self.disposition_tail
        elif self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return head + self.value + b"\r\n"


@dataclass(frozen=True)
class Form:
    """A multipart body and its Content-Type, as one client sends it."""

    boundary: str
    parts: tuple[FormPart, ...]

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def body(self) -> bytes:
        return b"".join(part.encode(self.boundary) for part in self.parts) + (
            f"--{self.boundary}--\r\n".encode()
        )

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Content-Type": self.content_type, **extra}


def _guessed_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def curl_form(*options: tuple[str, str], files: Iterable[tuple[str, str, bytes]] = ()) -> Form:
    """`curl -F k=v ... -F field=@file`: options in command-line order, then the files as
    (part name, file name, bytes), typed from the extension like curl does."""
    parts = [FormPart(name, value.encode()) for name, value in options]
    parts += [
        FormPart(name, data, filename, _guessed_type(filename)) for name, filename, data in files
    ]
    return Form("------------------------d74496d66958873e", tuple(parts))


def js_sdk_form(files: Sequence[tuple[str, bytes]], *options: tuple[str, str]) -> Form:
    """The JS SDK's FormData: each file appended as `files` (a Blob, typed from its name), then
    every option as a string, in the order the SDK appends them."""
    parts = [FormPart("files", data, name, _guessed_type(name)) for name, data in files]
    parts += [FormPart(name, value.encode()) for name, value in options]
    return Form("----WebKitFormBoundary7MA4YWxkTrZu0gW", tuple(parts))


def php_client_form(files: Sequence[tuple[str, bytes]], *options: tuple[str, str]) -> Form:
    """The PHP client's request: `files[0]`, `files[1]`, ... then the options (Guzzle's
    multipart writes no Content-Type for text parts)."""
    parts = [
        FormPart(f"files[{index}]", data, name, _guessed_type(name))
        for index, (name, data) in enumerate(files)
    ]
    parts += [FormPart(name, value.encode()) for name, value in options]
    return Form("6b1a8f2c4e5d7a9b0c3e1f2a4b6c8d0e", tuple(parts))


def body_fields(response: httpx.Response) -> dict[str, str]:
    """The error body's `fields` as {field: message}, after checking the body has the shape
    the PHP client needs (`detail` a string, `meta` an object)."""
    body = response.json()
    assert isinstance(body["detail"], str), body
    assert isinstance(body["meta"], dict), body
    return {item["field"]: item["message"] for item in body["fields"]}
