from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

from tests.gateway.conftest import (
    CHUNK,
    CLOSING,
    FormApp,
    MemoryBlobs,
    chunked,
    file_part,
    identity,
    multipart_body,
    parsed,
)


async def test_slow_upload_holds_back_the_request_and_memory_stays_bounded() -> None:
    blobs = MemoryBlobs(chunk_delay=0.001)
    app = FormApp(blobs, identity)
    total_chunks = 480  # 30 MiB
    digest = hashlib.sha256()
    sent = 0
    lead = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, lead
        yield file_part("files", b"", "big.bin").head()
        for _ in range(total_chunks):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            sent += len(chunk)
            lead = max(lead, sent - blobs.consumed)
            yield chunk
        yield b"\r\n" + CLOSING

    tracemalloc.start()
    try:
        response = await app.post(body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 200, response.text
    (uploaded,) = parsed(app).files
    assert uploaded.size == total_chunks * CHUNK
    assert blobs.digests[uploaded.blob_id] == digest.hexdigest()
    # Without backpressure the request would run ~30 MiB ahead of the slow upload.
    assert lead < 1024 * 1024, lead
    assert peak < 4 * 1024 * 1024, peak


async def test_upload_error_reaches_the_client_and_earlier_uploads_are_discarded() -> None:
    blobs = MemoryBlobs(fail_on_file=2)
    app = FormApp(blobs, identity)
    response = await app.post(
        multipart_body([file_part("files", b"ok"), file_part("files", b"bad")])
    )
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_FORMAT"
    assert len(blobs.discarded) == 1
    assert blobs.kept == set()


async def test_upload_that_stops_reading_early_is_an_internal_error_and_its_blob_discarded() -> (
    None
):
    blobs = MemoryBlobs(stop_early=True)
    app = FormApp(blobs, identity)
    body = multipart_body([file_part("files", b"z" * 10_000)])
    response = await app.post(chunked(body, 1024))
    assert response.status_code == 500
    assert len(blobs.digests) == 1
    assert blobs.kept == set()
