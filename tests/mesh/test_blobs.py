import asyncio
import base64
import hashlib
import io
import json
import os
import random
import time
import tracemalloc
import urllib.request
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType

from launcher.nats import NatsServer
from mesh import blobs
from mesh.blob_chunks import rechunk
from mesh.errors import MeshError, Reason

CHUNK = blobs.CHUNK_SIZE


@pytest.fixture(scope="module")
async def nc(server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(server.url)
    yield client
    await client.close()


@pytest.fixture
async def bucket(nc: Client, request: pytest.FixtureRequest) -> str:
    name: str = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    await blobs.ensure_bucket(nc.jetstream(), name)
    return name


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def random_blocks(total: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield os.urandom(min(size, total - start))


async def read_all(js: JetStreamContext, bucket: str, name: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read_stream(js, bucket, name)])


async def stream_state(js: JetStreamContext, bucket: str) -> tuple[int, int]:
    state = (await js.stream_info(f"OBJ_{bucket}")).state
    return state.messages, state.consumer_count


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024 + 17], ids=lambda s: f"{s}b"
)
async def test_round_trip_keeps_every_byte(js: JetStreamContext, bucket: str, size: int) -> None:
    data = os.urandom(size)
    # Odd input pieces exercise re-chunking across piece boundaries.
    written = await blobs.write_stream(js, bucket, "blob", pieces(data, 50_000))
    assert written == blobs.BlobInfo(
        "blob", size, hashlib.sha256(data).hexdigest(), -(-size // CHUNK)
    )
    assert await blobs.info(js, bucket, "blob") == written
    assert await read_all(js, bucket, "blob") == data


async def test_file_round_trip(js: JetStreamContext, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    written = await blobs.write_file(js, bucket, "file", source)
    read = await blobs.read_to_file(js, bucket, "file", target)
    assert read == written
    assert hashlib.sha256(target.read_bytes()).hexdigest() == written.sha256


async def test_nats_py_reads_what_we_write(js: JetStreamContext, bucket: str) -> None:
    data = os.urandom(2 * CHUNK + 3)
    await blobs.write_stream(js, bucket, "ours", pieces(data, 4096))
    store = await js.object_store(bucket)
    result = await store.get("ours")
    assert result.data == data
    assert result.info.size == len(data)
    await store.delete("ours")
    with pytest.raises(MeshError) as missing:
        await blobs.info(js, bucket, "ours")
    assert missing.value.reason is Reason.NOT_FOUND


async def test_nats_py_reads_blobs_with_larger_chunks(js: JetStreamContext, bucket: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    info = await blobs.write_stream(js, bucket, "wide", pieces(data, 1 << 20), chunk_size=1 << 20)
    assert info.chunks == 4
    assert (await (await js.object_store(bucket)).get("wide")).data == data
    assert await read_all(js, bucket, "wide") == data


async def test_we_read_what_nats_py_writes(js: JetStreamContext, bucket: str) -> None:
    data = os.urandom(3 * CHUNK + 11)
    store = await js.object_store(bucket)
    await store.put("theirs", io.BytesIO(data))
    assert await read_all(js, bucket, "theirs") == data
    info = await blobs.info(js, bucket, "theirs")
    nats_py_chunk = 128 * 1024  # nats-py's own default, not ours
    assert (info.size, info.chunks) == (len(data), -(-len(data) // nats_py_chunk))
    assert info.sha256 == hashlib.sha256(data).hexdigest()


async def test_too_large_raises_and_leaves_no_chunks(js: JetStreamContext, bucket: str) -> None:
    with pytest.raises(MeshError) as too_large:
        await blobs.write_stream(js, bucket, "big", random_blocks(3 * 1024 * 1024), max_bytes=2**20)
    assert too_large.value.reason is Reason.TOO_LARGE
    assert await stream_state(js, bucket) == (0, 0)
    with pytest.raises(MeshError) as missing:
        await blobs.info(js, bucket, "big")
    assert missing.value.reason is Reason.NOT_FOUND


async def test_exactly_max_bytes_is_accepted(js: JetStreamContext, bucket: str) -> None:
    info = await blobs.write_stream(
        js, bucket, "edge", random_blocks(2 * CHUNK), max_bytes=2 * CHUNK
    )
    assert info.size == 2 * CHUNK


async def test_failing_source_leaves_no_chunks(js: JetStreamContext, bucket: str) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(5 * CHUNK)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await blobs.write_stream(js, bucket, "partial", broken())
    assert await stream_state(js, bucket) == (0, 0)


async def test_cancelled_write_leaves_no_chunks(js: JetStreamContext, bucket: str) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield os.urandom(CHUNK)
            started.set()
            await asyncio.sleep(0.01)

    writing = asyncio.create_task(blobs.write_stream(js, bucket, "cancelled", endless()))
    await started.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (await stream_state(js, bucket))[0] >= 3:
            break
        await asyncio.sleep(0.01)
    assert (await stream_state(js, bucket))[0] >= 3  # some chunks were stored for real
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert await stream_state(js, bucket) == (0, 0)


async def test_writes_cancelled_while_publishing_leave_no_chunks(
    js: JetStreamContext, bucket: str
) -> None:
    # An aborted upload cancels its write at any point, in the middle of a publish too: the
    # chunk on its way must be waited for before the purge, or it lands after it.
    rng = random.Random(5)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield os.urandom(CHUNK // 4)

    for number in range(30):
        writing = asyncio.create_task(
            blobs.write_stream(js, bucket, f"aborted-{number}", endless())
        )
        await asyncio.sleep(rng.uniform(0.005, 0.06))
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
    assert await stream_state(js, bucket) == (0, 0)


async def test_the_sweeper_removes_chunks_nobody_finished_once_old_enough(
    js: JetStreamContext, bucket: str
) -> None:
    kept = os.urandom(2 * CHUNK + 5)
    await blobs.write_stream(js, bucket, "kept", pieces(kept, CHUNK))
    # A writer killed mid-write leaves chunks and no meta record.
    for _ in range(3):
        await js.publish(f"$O.{bucket}.C.abandonedwriter0001", os.urandom(1000))
    assert await blobs.sweep_orphan_chunks(js, bucket, older_than=3600) == 0
    assert (await stream_state(js, bucket))[0] == 3 + 3 + 1
    assert await blobs.sweep_orphan_chunks(js, bucket, older_than=0) == 1
    assert await read_all(js, bucket, "kept") == kept
    assert (await stream_state(js, bucket))[0] == 3 + 1
    assert await blobs.sweep_orphan_chunks(js, bucket, older_than=0) == 0


async def test_a_slow_write_stores_a_short_chunk_after_a_pause() -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * 10
        await asyncio.sleep(0.2)
        yield b"b" * 10
        yield b"c" * 10

    got = [piece async for piece in rechunk(slow(), 1000, flush_seconds=0.1)]
    assert got == [b"a" * 10 + b"b" * 10, b"c" * 10]
    assert [p async for p in rechunk(slow(), 1000)] == [b"a" * 10 + b"b" * 10 + b"c" * 10]


async def test_missing_blob_is_not_found(js: JetStreamContext, bucket: str, tmp_path: Path) -> None:
    for attempt in (
        blobs.info(js, bucket, "nope"),
        read_all(js, bucket, "nope"),
        blobs.read_to_file(js, bucket, "nope", tmp_path / "out"),
    ):
        with pytest.raises(MeshError) as missing:
            await attempt
        assert missing.value.reason is Reason.NOT_FOUND
    assert not (tmp_path / "out").exists()


async def test_delete_purges_chunks_and_is_idempotent(js: JetStreamContext, bucket: str) -> None:
    await blobs.write_stream(js, bucket, "gone", random_blocks(3 * CHUNK))
    await blobs.delete(js, bucket, "gone")
    await blobs.delete(js, bucket, "gone")
    await blobs.delete(js, bucket, "never-existed")
    messages, _ = await stream_state(js, bucket)
    assert messages == 1  # the tombstone meta record only
    with pytest.raises(MeshError) as missing:
        await blobs.info(js, bucket, "gone")
    assert missing.value.reason is Reason.NOT_FOUND


async def test_overwrite_purges_old_chunks(js: JetStreamContext, bucket: str) -> None:
    await blobs.write_stream(js, bucket, "same", random_blocks(5 * CHUNK))
    newer = os.urandom(2 * CHUNK)
    info = await blobs.write_stream(js, bucket, "same", pieces(newer, CHUNK))
    messages, _ = await stream_state(js, bucket)
    assert messages == info.chunks + 1
    assert await read_all(js, bucket, "same") == newer


@pytest.mark.parametrize("size", [1000, 2 * CHUNK], ids=["one_chunk", "two_chunks"])
async def test_a_damaged_blob_fails_at_the_end(
    js: JetStreamContext, bucket: str, size: int
) -> None:
    written = await blobs.write_stream(js, bucket, "bad", random_blocks(size), chunk_size=CHUNK)
    assert written.chunks == -(-size // CHUNK)  # the one-chunk read is a direct get
    await _damage_digest(js, bucket, "bad")
    with pytest.raises(MeshError) as damaged:
        await read_all(js, bucket, "bad")
    assert damaged.value.reason is Reason.INTERNAL


async def _damage_digest(js: JetStreamContext, bucket: str, name: str) -> None:
    """Rewrites the blob's meta record with a digest its chunks do not have."""
    meta = await (await js.object_store(bucket)).get_info(name)
    meta.digest = "SHA-256=" + "A" * 43 + "="
    meta_subject = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    await js.publish(meta_subject, json.dumps(meta.as_dict()).encode(), headers=blobs.ROLLUP)


async def _api_calls(server: NatsServer) -> int:
    url = f"http://127.0.0.1:{server.monitor_port}/jsz"

    def read() -> int:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(json.load(response)["api"]["total"])

    return await asyncio.to_thread(read)


async def test_a_one_chunk_blob_reads_without_a_consumer_or_api_call(
    js: JetStreamContext, bucket: str, server: NatsServer, tmp_path: Path
) -> None:
    # Direct gets of the meta record and of the chunk: no consumer to create and delete, and
    # no JetStream API request at all (the server's own count of them stays where it was).
    data = os.urandom(CHUNK - 3)
    written = await blobs.write_stream(js, bucket, "small", pieces(data, 70_000))
    assert written.chunks == 1
    before = await _api_calls(server)
    known = await blobs.info(js, bucket, "small")
    assert b"".join([c async for c in blobs.read_stream(js, bucket, "small", known=known)]) == data
    assert await read_all(js, bucket, "small") == data
    assert await blobs.read_to_file(js, bucket, "small", tmp_path / "small") == written
    assert (tmp_path / "small").read_bytes() == data
    assert await _api_calls(server) == before
    assert (await stream_state(js, bucket))[1] == 0


async def test_writing_a_new_blob_makes_no_api_call(
    js: JetStreamContext, bucket: str, server: NatsServer
) -> None:
    # The look-up of a blob it would replace is a direct get; the chunks and the meta record
    # are publishes. (Replacing one purges the old chunks: test_overwrite_purges_old_chunks.)
    before = await _api_calls(server)
    await blobs.write_stream(js, bucket, "fresh", random_blocks(2 * CHUNK + 1))
    assert await _api_calls(server) == before
    assert (await blobs.info(js, bucket, "fresh")).chunks == 3


async def test_a_known_info_is_read_without_the_meta_record(
    js: JetStreamContext, bucket: str
) -> None:
    # `known` is taken as it is: the reader goes straight to the chunks it names.
    data = os.urandom(2 * CHUNK + 9)
    known = await blobs.write_stream(js, bucket, "two", pieces(data, CHUNK))
    await js.purge_stream(f"OBJ_{bucket}", subject=f"$O.{bucket}.M.>")
    with pytest.raises(MeshError):
        await read_all(js, bucket, "two")
    chunks = blobs.read_stream(js, bucket, "two", known=known)
    assert b"".join([chunk async for chunk in chunks]) == data


async def test_a_one_chunk_blob_replaced_under_its_reader_is_unavailable(
    js: JetStreamContext, bucket: str
) -> None:
    await blobs.write_stream(js, bucket, "swap", pieces(b"first", CHUNK))
    known = await blobs.info(js, bucket, "swap")
    await blobs.write_stream(js, bucket, "swap", pieces(b"second", CHUNK))
    with pytest.raises(MeshError) as changed:
        await anext(blobs.read_stream(js, bucket, "swap", known=known))
    assert changed.value.reason is Reason.UNAVAILABLE


async def test_reader_stopped_early_deletes_its_consumer(js: JetStreamContext, bucket: str) -> None:
    await blobs.write_stream(js, bucket, "long", random_blocks(40 * CHUNK))
    async with aclosing(blobs.read_stream(js, bucket, "long", batch=8)) as chunks:
        async for _ in chunks:
            assert (await stream_state(js, bucket))[1] == 1
            break
    assert (await stream_state(js, bucket))[1] == 0


async def test_abandoned_reader_deletes_its_consumer(js: JetStreamContext, bucket: str) -> None:
    await blobs.write_stream(js, bucket, "long", random_blocks(40 * CHUNK))
    chunks = blobs.read_stream(js, bucket, "long", batch=8)
    await anext(chunks)
    del chunks  # the event loop's async-generator finalizer closes it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (await stream_state(js, bucket))[1] == 0:
            break
        await asyncio.sleep(0.05)
    assert (await stream_state(js, bucket))[1] == 0


async def test_memory_stays_flat_for_large_blobs(js: JetStreamContext, bucket: str) -> None:
    size = 32 * 1024 * 1024
    tracemalloc.start()
    try:
        await blobs.write_stream(js, bucket, "large", random_blocks(size))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        async for chunk in blobs.read_stream(js, bucket, "large"):
            digest.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == (await blobs.info(js, bucket, "large")).sha256
    # Bounded by the publish window (8 MiB) and the read batch (4 MiB), not by the 32 MiB blob;
    # measured about 5.5 MiB and 1.1 MiB on an idle machine.
    assert write_peak < 12 * 1024 * 1024, write_peak
    assert read_peak < 8 * 1024 * 1024, read_peak


async def test_ensure_bucket_creates_file_storage_once(js: JetStreamContext) -> None:
    await blobs.ensure_bucket(js, "limited", ttl_seconds=3600, max_bytes=10 * 1024 * 1024)
    await blobs.ensure_bucket(js, "limited")
    config = (await js.stream_info("OBJ_limited")).config
    assert (config.storage, config.max_age, config.max_bytes) == (StorageType.FILE, 3600, 10 << 20)
