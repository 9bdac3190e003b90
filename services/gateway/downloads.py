"""Streaming an output to the client: the headers a download needs, single byte ranges (206),
and conditional requests on the content's ETag (304)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mesh.jobs.v1 import jobs_pb2
from services.gateway.client import ByteRange

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def content_disposition(filename: str) -> str:
    """An attachment header safe for any name: ASCII fallback plus RFC 5987 UTF-8 form."""
    fallback = (
        "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
        or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def requested_range(request: Request) -> ByteRange | None:
    """The one byte range asked for, or None for the whole output. Several ranges, a
    malformed header or an `If-Range` (whose validator we cannot check before reading) all
    get the whole output, as RFC 9110 allows."""
    raw = request.headers.get("range", "").strip()
    if not raw or "if-range" in request.headers:
        return None
    match = _RANGE.match(raw.replace(" ", ""))
    if match is None or not raw.isascii():
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return ByteRange(suffix_length=int(last)) if int(last) > 0 else None
    start = int(first)
    if last:
        end = int(last)
        if end < start:
            return None
        return ByteRange(offset=start, length=end - start + 1)
    return ByteRange(offset=start)


def _etag_matches(request: Request, etag: str) -> bool:
    candidates = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    return etag in candidates or "*" in candidates


async def download_response(
    request: Request,
    header: jobs_pb2.OutputHeader,
    body: AsyncIterator[bytes],
    ranged: bool,
) -> Response:
    etag = f'"{header.sha256}"'
    headers = {
        "Content-Disposition": content_disposition(header.filename),
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=3600",
    }
    if _etag_matches(request, etag):
        await body.aclose()  # type: ignore[attr-defined]
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(header.range_length)
    status = 200
    if ranged:
        last = header.range_start + header.range_length - 1
        headers["Content-Range"] = f"bytes {header.range_start}-{last}/{header.size}"
        status = 206
    return StreamingResponse(
        body,
        status_code=status,
        media_type=header.mime_type or "application/octet-stream",
        headers=headers,
    )
