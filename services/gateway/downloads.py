"""Streaming an output to the client with the headers a download needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from mesh.jobs.v1 import jobs_pb2


def content_disposition(filename: str) -> str:
    """An attachment header safe for any name: ASCII fallback plus RFC 5987 UTF-8 form."""
    fallback = (
        "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
        or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_response(header: jobs_pb2.OutputHeader, body: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(
        body,
        media_type=header.mime_type or "application/octet-stream",
        headers={
            "Content-Length": str(header.size),
            "Content-Disposition": content_disposition(header.filename),
            "ETag": f'"{header.sha256}"',
            "Cache-Control": "private, max-age=3600",
        },
    )
