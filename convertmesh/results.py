"""Answers of the synchronous routes (`/api/convert`, `/api/compress`, `/api/media/<tool>`):
`data:` URLs decoded to files, or the bytes themselves with the name from
`Content-Disposition`; and names that do not collide within one batch."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from convertmesh.errors import ServerError
from convertmesh.models import Saved, extension_for, safe_filename, stem_of


@dataclass(frozen=True)
class Failed:
    """A file of a synchronous answer that failed (the others were still answered)."""

    filename: str
    message: str
    code: str | None


@dataclass(frozen=True)
class ToolResult:
    """A media tool's answer: the outputs written to disk, the `media` document of inspect,
    or the job id of a background run."""

    outputs: tuple[Saved, ...] = ()
    failed: tuple[Failed, ...] = ()
    media: Mapping[str, Any] | None = None
    job_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


_DISPOSITION_UTF8 = re.compile(r"filename\*\s*=\s*UTF-8''([^;]+)", re.IGNORECASE)
_DISPOSITION_PLAIN = re.compile(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;\s]+)', re.IGNORECASE)


def filename_from_disposition(header: str | None) -> str | None:
    if not header:
        return None
    encoded = _DISPOSITION_UTF8.search(header)
    if encoded:
        return safe_filename(unquote(encoded.group(1).strip()))
    plain = _DISPOSITION_PLAIN.search(header)
    if plain:
        return safe_filename(plain.group(1) or plain.group(2))
    return None


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 `data:` URL."""
    head, comma, payload = url.partition(",")
    if not head.startswith("data:") or not comma or not head.endswith(";base64"):
        raise ServerError(200, "The server's answer has a download that is not a data: URL.")
    try:
        return head[5:-7] or "application/octet-stream", base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ServerError(200, "The server's answer has a damaged data: URL.") from None


class NamePicker:
    """Names in one output directory that collide neither with each other nor with the
    inputs: `photo.webp`, `photo (2).webp`, ..."""

    def __init__(self, directory: Path, protected: set[Path] | None = None) -> None:
        self.directory = directory
        self.taken: set[str] = set()
        self.protected = {p.resolve() for p in protected or set()}

    def pick(self, name: str) -> Path:
        name = safe_filename(name)
        stem = stem_of(name)
        extension = name[len(stem) :]
        candidate, number = name, 1
        while candidate in self.taken or (self.directory / candidate).resolve() in self.protected:
            number += 1
            candidate = f"{stem} ({number}){extension}"
        self.taken.add(candidate)
        return self.directory / candidate


def write_atomically(path: Path, content: bytes) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(content)
    os.replace(part, path)


def save_sync_files(
    body: Mapping[str, Any], names: NamePicker
) -> tuple[tuple[Saved, ...], tuple[Failed, ...]]:
    """Writes each `data:` URL of a `{"files": [...]}` answer into the output directory."""
    saved: list[Saved] = []
    failed: list[Failed] = []
    items = body.get("files")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        name = str(item.get("filename") or "output")
        url = item.get("downloadUrl")
        if not isinstance(url, str):
            message = str(item.get("error") or item.get("errorMessage") or "no output")
            failed.append(Failed(name, message, item.get("code") or item.get("errorCode")))
            continue
        mime, content = decode_data_url(url)
        if not item.get("originalFilename"):  # older servers name the output like its input
            extension = extension_for(item.get("format"), item.get("mimeType") or mime)
            if extension and not name.lower().endswith("." + extension):
                name = f"{stem_of(name)}.{extension}"
        path = names.pick(name)
        write_atomically(path, content)
        saved.append(
            Saved(
                str(path),
                path.name,
                item.get("mimeType") or mime,
                len(content),
                item.get("originalSize"),
                item.get("savedPercent"),
            )
        )
    return tuple(saved), tuple(failed)


def without_payloads(body: Mapping[str, Any]) -> dict[str, Any]:
    """The answer without its `data:` URLs (written to disk, not kept in memory)."""
    files = body.get("files")
    kept = [
        {k: v for k, v in item.items() if k != "downloadUrl"}
        for item in (files if isinstance(files, list) else ())
        if isinstance(item, Mapping)
    ]
    return {**body, "files": kept}
