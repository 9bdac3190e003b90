"""`sourceUrl`: a file fetched from the web into the object store, as an upload would arrive.

The URL goes through the guard (`urlguard`: resolved once, the address pinned, every redirect
checked again, non-public addresses refused) and `outbound.stream` (the pinned address, no
proxies, at most a few redirects). The body streams straight into the object store
(`mesh.blobs`): never whole in memory, cut off at the upload size limit (a declared
Content-Length over it is refused before any byte is read), and a partial blob is removed on any
failure. Time is bounded three ways: the whole fetch, silence between reads, and the average
rate over the last window, which must stay above a floor (so a server trickling a few bytes a
second is cut off after one window, not after the whole time limit).
The content type is sniffed from the bytes (`mesh.formats.sniff`); the server's is ignored.
"""

from __future__ import annotations

import asyncio
import os
import time
import unicodedata
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from nats.js import JetStreamContext

from mesh import blobs
from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS, SNIFF_BYTES, Sniffed, sniff
from services.orchestrator import outbound, urlguard

FIELD = "sourceUrl"
USER_AGENT = "convertmesh-fetch/1"
DEFAULT_FILENAME = "download"
MAX_FILENAME = 200


@dataclass(frozen=True)
class FetchLimits:
    """Given by the orchestrator's settings; `max_bytes` is its upload limit."""

    max_bytes: int
    total_seconds: float = 300.0
    idle_seconds: float = 30.0  # also bounds connecting and the answer's headers
    min_bytes_per_second: float = 16 * 1024
    rate_window_seconds: float = 30.0


@dataclass(frozen=True)
class Fetched:
    blob: blobs.BlobInfo
    sniffed: Sniffed
    filename: str  # from Content-Disposition or the URL's last segment, cleaned
    url: str  # after redirects

    @property
    def mime_type(self) -> str:
        known = OUTPUT_FORMATS.get(self.sniffed.format)
        return known.mime_type if known else "application/octet-stream"


def _invalid(reason: str) -> MeshError:
    return MeshError(Reason.INVALID_FIELD, f"{FIELD}: {reason}.", fields={FIELD: reason})


def _too_large(limit: int) -> MeshError:
    return MeshError(
        Reason.TOO_LARGE,
        f"{FIELD}: the file is larger than the {limit} byte limit.",
        max_bytes=limit,
        fields={FIELD: f"must be at most {limit} bytes"},
    )


class _Pace:
    """Refuses a transfer whose rate over the last window stays below the floor."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.received = 0
        self.marks: deque[tuple[float, int]] = deque([(self.started, 0)])

    def count(self, size: int) -> None:
        now = time.monotonic()
        self.received += size
        self.marks.append((now, self.received))
        window = self.limits.rate_window_seconds
        while len(self.marks) > 1 and self.marks[1][0] <= now - window:
            self.marks.popleft()
        since, then = self.marks[0]
        if now - self.started >= window and now - since >= window:
            rate = (self.received - then) / (now - since)
            if rate < self.limits.min_bytes_per_second:
                raise MeshError(
                    Reason.TIMEOUT,
                    f"{FIELD}: the server sent {rate:.0f} bytes per second, below the "
                    f"{self.limits.min_bytes_per_second:.0f} allowed.",
                    fields={FIELD: "the server sent the file too slowly"},
                )


def _filename(disposition: str | None, url: str) -> str:
    name = ""
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = str(message.get_filename() or "")
    if not name:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = os.path.basename(name.replace("\\", "/")).strip().strip(".")
    return name[:MAX_FILENAME] or DEFAULT_FILENAME


async def fetch_to_store(
    js: JetStreamContext,
    url: str,
    *,
    bucket: str,
    name: str,
    allow: urlguard.Allowlist,
    limits: FetchLimits,
) -> Fetched:
    """Fetches `url` into blob `name` of `bucket`. Raises MeshError naming `sourceUrl`:
    INVALID_FIELD (refused URL or address, a 4xx answer), TOO_LARGE, TIMEOUT, UNAVAILABLE."""
    try:
        async with asyncio.timeout(limits.total_seconds):
            target = await urlguard.check_async(url, allow, FIELD)
            async with outbound.stream(
                outbound.Request("GET", {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}),
                target,
                allow=allow,
                seconds=limits.idle_seconds,
                field=FIELD,
            ) as answer:
                return await _store(js, answer, bucket, name, limits)
    except TimeoutError:
        raise MeshError(
            Reason.TIMEOUT,
            f"{FIELD}: the file did not arrive within {limits.total_seconds:g} s.",
            fields={FIELD: "the download took too long"},
        ) from None


def _check_answer(answer: outbound.Streamed, limits: FetchLimits) -> None:
    if 400 <= answer.status < 500:
        raise _invalid(f"the server answered {answer.status}")
    if not 200 <= answer.status < 300:
        raise MeshError(
            Reason.UNAVAILABLE, f"{FIELD}: the server answered {answer.status}; retry later."
        )
    encoding = answer.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise _invalid(f"the server sent a {encoding}-encoded body though none was asked for")
    declared = answer.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits.max_bytes)


async def _store(
    js: JetStreamContext, answer: outbound.Streamed, bucket: str, name: str, limits: FetchLimits
) -> Fetched:
    _check_answer(answer, limits)
    head = bytearray()
    pace = _Pace(limits)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in answer.chunks:
            pace.count(len(chunk))
            if len(head) < SNIFF_BYTES:
                head.extend(chunk[: SNIFF_BYTES - len(head)])
            yield chunk

    try:
        info = await blobs.write_stream(js, bucket, name, body(), max_bytes=limits.max_bytes)
    except MeshError as error:
        if error.reason is Reason.TOO_LARGE:
            raise _too_large(limits.max_bytes) from None
        raise
    filename = _filename(answer.headers.get("content-disposition"), answer.url)
    return Fetched(info, sniff(bytes(head)), filename, answer.url)
