"""Uploads: the caller's blob store as seen by the form reader, and the pipe that feeds it.

`UploadPipe` runs the caller's `Upload` as a task and hands it one file's chunks through a
bounded queue, so a slow upload slows the reading of the request instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

from mesh.errors import MeshError, Reason

log = logging.getLogger(__name__)


class StoredBlob(Protocol):
    """What an upload reports about the blob it stored."""

    @property
    def blob_id(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def detected_format(self) -> str: ...
    @property
    def family(self) -> str: ...


class Upload(Protocol):
    """Stores one file. Must read `chunks` to the end; a partial read is treated as a bug."""

    def __call__(
        self, filename: str, content_type: str, chunks: AsyncIterator[bytes], /
    ) -> Awaitable[StoredBlob]: ...


class Discard(Protocol):
    def __call__(self, blob_id: str, /) -> Awaitable[None]: ...


@dataclass(frozen=True)
class UploadedFile:
    field: str  # the part name: files, files[], files[N] or file
    filename: str  # display only, see filenames.display_filename
    content_type: str  # as the client declared it; routing never trusts it
    blob_id: str
    size: int
    detected_format: str
    family: str


def _stopped_early() -> MeshError:
    log.error("an upload returned before reading its whole file")
    return MeshError(Reason.INTERNAL)


class UploadPipe:
    """One file's chunks on their way to its upload task, with backpressure."""

    def __init__(self, upload: Upload, filename: str, content_type: str, depth: int) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=depth)
        self._drained = False
        self._task = asyncio.ensure_future(upload(filename, content_type, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk
        self._drained = True

    def _raise_stopped(self) -> None:
        self._task.result()  # re-raises the upload's own error
        raise _stopped_early()

    async def send(self, chunk: bytes | None) -> None:
        """Queues a chunk (None ends the file); waits while the queue is full."""
        if self._task.done():
            self._raise_stopped()
        if not self._queue.full():
            self._queue.put_nowait(chunk)
            return
        put = asyncio.ensure_future(self._queue.put(chunk))
        try:
            await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        if not put.done() or put.cancelled():
            self._raise_stopped()

    async def close(self) -> StoredBlob:
        await self.send(None)
        blob = await self._task
        if not self._drained:
            raise _stopped_early()
        return blob

    async def abort(self) -> str | None:
        """Stops the upload; returns the id of a blob it managed to store anyway."""
        self._task.cancel()
        await asyncio.wait({self._task})
        if self._task.cancelled() or self._task.exception() is not None:
            return None
        return self._task.result().blob_id


async def discard_blobs(blob_ids: list[str], discard: Discard) -> None:
    for blob_id in blob_ids:
        try:
            await discard(blob_id)
        except Exception:
            # The original failure matters to the client; a leftover blob is the store's GC's job.
            log.warning("could not discard blob %s", blob_id, exc_info=True)


async def discard_uploads(files: tuple[UploadedFile, ...], discard: Discard) -> None:
    """Discards every uploaded blob, logging (not raising) individual failures."""
    await discard_blobs([uploaded.blob_id for uploaded in files], discard)
