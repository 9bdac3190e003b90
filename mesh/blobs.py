"""Streaming blob I/O on a JetStream Object Store, in the layout nats-py's ObjectStore uses.

nats-py's `ObjectStore.get` grows one `bytes` per chunk and `put` waits for each publish ack in
turn; both run far below what the broker can do. Here writes keep a bounded window of publish
acks in flight and reads pull chunks in overlapping batches, so memory stays flat whatever the
blob size. Stream, subjects and the JSON meta record match nats-py, so either side reads the
other's blobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.nuid import NUID

from mesh.blob_chunks import pull, rechunk, stream_subjects, unavailable
from mesh.errors import MeshError, Reason

# Chunks of 960 KiB: with `sync_interval: always` every chunk is an fsync, and 128 KiB chunks
# (nats-py's default) wrote 71 MB/s against 201 MB/s for 1 MiB in the same bench run; kept
# under NATS's default 1 MB max_payload so a stock cluster accepts them.
CHUNK_SIZE = 960 * 1024
# Unacknowledged bytes in flight on write (64 chunks of 128 KiB keep the broker busy; more did
# not measure faster) and bytes requested ahead on read.
WRITE_WINDOW_BYTES = 8 * 1024 * 1024
READ_WINDOW_BYTES = 4 * 1024 * 1024
FILE_BLOCK = 1024 * 1024
ACK_TIMEOUT_SECONDS = 10.0
# A write in progress stores what it has at least this often (a shorter chunk), so that the
# age of its newest chunk tells it from an abandoned one (`sweep_orphan_chunks`).
FLUSH_SECONDS = 30.0
# nats-py's rollup header: the meta subject keeps only the newest record.
ROLLUP = {"Nats-Rollup": "sub"}
DIGEST_PREFIX = "SHA-256="

_nuid = NUID()


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    sha256: str
    chunks: int
    # Where the chunks are (the meta record's nuid) and their size: what a reader needs besides
    # the above, so a caller that has the info already reads without fetching the meta again.
    nuid: str = field(default="", compare=False)
    chunk_size: int = field(default=0, compare=False)


def _stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


async def ensure_bucket(
    js: JetStreamContext,
    bucket: str,
    *,
    ttl_seconds: float | None = None,
    max_bytes: int | None = None,
    replicas: int = 1,
) -> None:
    try:
        await js.object_store(bucket)
    except nats.js.errors.BucketNotFoundError:
        config = api.ObjectStoreConfig(
            bucket=bucket,
            storage=api.StorageType.FILE,
            ttl=ttl_seconds,
            max_bytes=max_bytes or -1,
            replicas=replicas,
        )
        await js.create_object_store(bucket, config=config)
    except nats.errors.Error as error:
        raise unavailable(error) from error


async def _last(
    js: JetStreamContext, stream: str, subject: str, direct: bool, confirm_miss: bool = True
) -> api.RawStreamMsg:
    """The newest message on `subject`. `direct`: a direct get, which any replica answers
    without a JetStream API call; a replica that has not caught up yet may not have it, so a
    direct miss is asked again of the stream leader (STREAM.MSG.GET) before it counts, unless
    `confirm_miss` is off."""
    if direct:
        try:
            return await js.get_last_msg(stream, subject, direct=True)
        except nats.js.errors.NotFoundError:
            if not confirm_miss:
                raise
    return await js.get_last_msg(stream, subject)


async def _meta(
    js: JetStreamContext,
    bucket: str,
    name: str,
    *,
    direct: bool = False,
    confirm_miss: bool = True,
) -> api.ObjectInfo | None:
    try:
        msg = await _last(js, _stream(bucket), _meta_subject(bucket, name), direct, confirm_miss)
    except nats.js.errors.NotFoundError:
        return None
    except nats.errors.Error as error:
        raise unavailable(error) from error
    meta = api.ObjectInfo.from_response(json.loads(msg.data or b"{}"))
    return None if meta.deleted else meta


async def _open(js: JetStreamContext, bucket: str, name: str) -> BlobInfo:
    # Readers expect the blob to be there: a direct get, the leader asked only on a miss.
    meta = await _meta(js, bucket, name, direct=True)
    if meta is None:
        raise MeshError(Reason.NOT_FOUND, "No such blob.", name=name)
    return _blob_info(meta)


def _blob_info(meta: api.ObjectInfo) -> BlobInfo:
    digest = base64.urlsafe_b64decode((meta.digest or "")[len(DIGEST_PREFIX) :])
    options = meta.options
    chunk_size = (options.max_chunk_size if options else None) or CHUNK_SIZE
    return BlobInfo(
        meta.name, meta.size or 0, digest.hex(), meta.chunks or 0, meta.nuid or "", chunk_size
    )


async def exists(js: JetStreamContext, bucket: str, name: str) -> bool:
    return await _meta(js, bucket, name) is not None


async def info(js: JetStreamContext, bucket: str, name: str) -> BlobInfo:
    """The blob's size, digest and layout; pass it to `read_stream`/`read_to_file` as `known`
    to read without fetching the meta record again."""
    return await _open(js, bucket, name)


async def _purge(js: JetStreamContext, bucket: str, nuid: str) -> None:
    # Best effort: if the broker is gone the chunks cannot be removed now either.
    with contextlib.suppress(nats.errors.Error):
        await js.purge_stream(_stream(bucket), subject=_chunk_subject(bucket, nuid))


async def _publish_meta(js: JetStreamContext, meta: api.ObjectInfo) -> None:
    subject = _meta_subject(meta.bucket, meta.name)
    await js.publish(subject, json.dumps(meta.as_dict()).encode(), headers=ROLLUP)


async def delete(js: JetStreamContext, bucket: str, name: str) -> None:
    meta = await _meta(js, bucket, name)
    if meta is None:
        return
    nuid = meta.nuid
    meta.deleted, meta.size, meta.chunks, meta.digest, meta.mtime = True, 0, 0, "", ""
    try:
        await _publish_meta(js, meta)
    except nats.errors.Error as error:
        raise unavailable(error) from error
    finally:
        await _purge(js, bucket, nuid)


async def _settle(acks: deque[asyncio.Future[api.PubAck]]) -> None:
    """Waits out the publishes in flight, so a purge after it cannot miss a late chunk."""
    if acks:
        await asyncio.wait(acks, timeout=ACK_TIMEOUT_SECONDS)
        for ack in acks:
            if ack.done() and not ack.cancelled():
                ack.exception()


# Clean-ups of aborted writes still running: a strong reference until they end.
_cleanups: set[asyncio.Task[None]] = set()


async def _abandon(
    js: JetStreamContext,
    bucket: str,
    nuid: str,
    acks: deque[asyncio.Future[api.PubAck]],
    publishing: asyncio.Future[asyncio.Future[api.PubAck]] | None,
) -> None:
    """Removes what an aborted write stored. It runs to its end even when the writer is
    cancelled again meanwhile (a client gone, a server stopping): the writer stops waiting,
    the clean-up does not. What it cannot remove (the broker gone, the process killed) is
    left to `sweep_orphan_chunks`."""

    async def clean_up() -> None:
        if publishing is not None:
            # A publish cancelled on its way may have sent its chunk: wait for its ack too.
            with contextlib.suppress(BaseException):
                acks.append(await publishing)
        await _settle(acks)
        await _purge(js, bucket, nuid)

    task = asyncio.get_running_loop().create_task(clean_up())
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    await asyncio.shield(task)


async def write_stream(
    js: JetStreamContext,
    bucket: str,
    name: str,
    chunks: AsyncIterable[bytes],
    *,
    max_bytes: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> BlobInfo:
    """Stores `chunks` under `name`, replacing any blob of that name once it is complete.

    `chunk_size` is free per blob (readers take any); larger chunks mean fewer broker fsyncs.
    """
    # The blob this one replaces, whose chunks go once this one is complete. Usually there is
    # none (a fresh name): one direct get, no API call. A replica behind that misses it leaves
    # its chunks, which no meta record names then, to `sweep_orphan_chunks`.
    old = await _meta(js, bucket, name, direct=True, confirm_miss=False)
    nuid = _nuid.next().decode()
    subject = _chunk_subject(bucket, nuid)
    digest = hashlib.sha256()
    size = count = 0
    acks: deque[asyncio.Future[api.PubAck]] = deque()
    window = max(2, WRITE_WINDOW_BYTES // chunk_size)
    publishing: asyncio.Future[asyncio.Future[api.PubAck]] | None = None
    try:
        async for chunk in rechunk(chunks, chunk_size, FLUSH_SECONDS):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise MeshError(Reason.TOO_LARGE, "The file is too large.", max_bytes=max_bytes)
            digest.update(chunk)
            count += 1
            if len(acks) >= window:
                async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
                    await acks.popleft()
            publishing = asyncio.ensure_future(js.publish_async(subject, chunk))
            acks.append(await asyncio.shield(publishing))
            publishing = None
        async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
            while acks:
                await acks.popleft()
        meta = api.ObjectInfo(
            name=name,
            bucket=bucket,
            nuid=nuid,
            size=size,
            chunks=count,
            mtime=datetime.now(UTC).isoformat(),
            digest=DIGEST_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode(),
            options=api.ObjectMetaOptions(max_chunk_size=chunk_size),
        )
        await _publish_meta(js, meta)
    except BaseException as error:
        await _abandon(js, bucket, nuid, acks, publishing)
        if isinstance(error, (nats.errors.Error, TimeoutError)):
            raise unavailable(error) from error
        raise
    if old is not None:
        await _purge(js, bucket, old.nuid)
    return BlobInfo(name, size, digest.hexdigest(), count, nuid, chunk_size)


async def _file_blocks(path: Path, size: int) -> AsyncIterator[bytes]:
    # Plain reads: a 1 MiB read from a local scratch file costs less than a hop to a thread
    # (thread read-ahead measured slower, through GIL hand-offs with the event loop).
    with path.open("rb") as file:
        while block := file.read(size):
            yield block


async def write_file(
    js: JetStreamContext, bucket: str, name: str, path: Path, *, chunk_size: int = CHUNK_SIZE
) -> BlobInfo:
    return await write_stream(
        js, bucket, name, _file_blocks(path, max(chunk_size, FILE_BLOCK)), chunk_size=chunk_size
    )


async def _single(js: JetStreamContext, bucket: str, nuid: str) -> bytes:
    """The one chunk of a one-chunk blob by a direct get of its subject's last message: no
    consumer to create and delete (two JetStream API calls and their replies)."""
    try:
        msg = await _last(js, _stream(bucket), _chunk_subject(bucket, nuid), True)
    except nats.js.errors.NotFoundError as error:
        # Only a purge under a reader (the blob was replaced or deleted) gets here.
        raise MeshError(Reason.UNAVAILABLE, "The blob changed while it was read.") from error
    except (TimeoutError, nats.errors.Error) as error:
        raise unavailable(error) from error
    return msg.data or b""


async def _verified(
    js: JetStreamContext, bucket: str, expected: BlobInfo, batch: int | None
) -> AsyncGenerator[bytes, None]:
    if batch is None:
        batch = max(2, READ_WINDOW_BYTES // (expected.chunk_size or CHUNK_SIZE))
    digest = hashlib.sha256()
    size = 0
    if expected.chunks == 1:
        chunk = await _single(js, bucket, expected.nuid)
        size = len(chunk)
        digest.update(chunk)
        yield chunk
    elif expected.chunks:
        chunks = pull(
            js, _stream(bucket), _chunk_subject(bucket, expected.nuid), expected.chunks, batch
        )
        # aclosing: a reader that stops early deletes its consumer now, not when collected.
        async with aclosing(chunks):
            async for chunk in chunks:
                size += len(chunk)
                digest.update(chunk)
                yield chunk
    if size != expected.size or digest.hexdigest() != expected.sha256:
        raise MeshError(Reason.INTERNAL, "The stored blob is damaged.", name=expected.name)


async def read_stream(
    js: JetStreamContext,
    bucket: str,
    name: str,
    *,
    batch: int | None = None,
    known: BlobInfo | None = None,
) -> AsyncGenerator[bytes, None]:
    """Yields the blob's chunks in order, then checks size and digest.

    `batch` is how many chunks to request ahead (default: 4 MiB worth). `known`: this blob's
    `info`, when the caller has it (its meta record is not read again). Use it with `aclosing`
    so a reader that stops early deletes its consumer at once.
    """
    expected = known if known is not None and known.nuid else await _open(js, bucket, name)
    async with aclosing(_verified(js, bucket, expected, batch)) as chunks:
        async for chunk in chunks:
            yield chunk


async def read_to_file(
    js: JetStreamContext, bucket: str, name: str, path: Path, *, known: BlobInfo | None = None
) -> BlobInfo:
    expected = known if known is not None and known.nuid else await _open(js, bucket, name)
    try:
        # Plain writes to a local scratch file, as in `_file_blocks`: a thread hop per write
        # measured 210-235 MB/s against 265-285 MB/s for writing in place.
        with path.open("wb") as file:
            async with aclosing(_verified(js, bucket, expected, None)) as chunks:
                async for chunk in chunks:
                    file.write(chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return expected


async def live(js: JetStreamContext, bucket: str) -> list[api.ObjectInfo]:
    """The meta record of every blob in `bucket` that is not deleted."""
    stream = _stream(bucket)
    metas = await stream_subjects(js, stream, f"$O.{bucket}.M.>")
    total = sum(metas.values())
    found: list[api.ObjectInfo] = []
    if not total:
        return found
    records = pull(js, stream, f"$O.{bucket}.M.>", total, 64)
    async with aclosing(records):
        async for data in records:
            meta = api.ObjectInfo.from_response(json.loads(data or b"{}"))
            if not meta.deleted and meta.nuid:
                found.append(meta)
    return found


async def orphan_groups(js: JetStreamContext, bucket: str) -> list[str]:
    """The chunk groups (by nuid) that no live blob's meta record names."""
    groups = await stream_subjects(js, _stream(bucket), f"$O.{bucket}.C.>")
    if not groups:
        return []
    owned = {meta.nuid for meta in await live(js, bucket)}
    nuids = (subject.rsplit(".", 1)[-1] for subject in groups)
    return [nuid for nuid in nuids if nuid not in owned]


async def sweep_orphan_chunks(js: JetStreamContext, bucket: str, older_than: float) -> int:
    """Purges the chunks of writes that never got their meta record (a writer killed before
    it could clean up, or whose clean-up failed) once their newest chunk is `older_than`
    seconds old; returns how many such groups were removed. A write in progress stores a
    chunk at least every `FLUSH_SECONDS` plus the gap between its pieces (which the
    orchestrator and gateway bound), so `older_than` must be longer than that."""
    stream = _stream(bucket)
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
    removed = 0
    for nuid in await orphan_groups(js, bucket):
        subject = _chunk_subject(bucket, nuid)
        try:
            newest = await js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            continue
        except nats.errors.Error as error:
            raise unavailable(error) from error
        if newest.time is None or newest.time > cutoff:
            continue
        await _purge(js, bucket, nuid)
        removed += 1
    return removed
