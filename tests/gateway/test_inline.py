"""The sync routes' holder: the first small file kept in memory, the rest uploaded as always."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from mesh.jobs.v1 import jobs_pb2
from services.gateway.client import JobClient
from services.gateway.inline import HELD_PREFIX, Holder, StoredForm
from services.gateway.uploads import UploadedFile

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


class Store:
    """Stands in for the orchestrator's blob store (UploadBlob, DeleteBlob)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.deleted: list[str] = []

    async def upload(
        self, tenant: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> jobs_pb2.BlobRef:
        data = b"".join([chunk async for chunk in chunks])
        blob_id = f"stored-{len(self.blobs)}"
        self.blobs[blob_id] = data
        return jobs_pb2.BlobRef(blob_id=blob_id, size=len(data))

    async def delete_blob(self, tenant: str, blob_id: str) -> None:
        self.deleted.append(blob_id)


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def holder(store: Store, max_bytes: int) -> Holder:
    return Holder(cast(JobClient, store), "acme", max_bytes)


async def test_the_first_small_file_is_held_and_sniffed_as_an_upload_would_be() -> None:
    store = Store()
    held = holder(store, 1024)
    blob = await held.upload("a.png", "image/png", pieces(PNG[:10], PNG[10:]))
    assert blob.blob_id.startswith(HELD_PREFIX)
    assert (blob.size, blob.detected_format, blob.family) == (len(PNG), "png", "image")
    assert held.held[blob.blob_id].data == PNG
    assert store.blobs == {}
    # The second file is uploaded at once, however small.
    second = await held.upload("b.png", "image/png", pieces(PNG))
    assert store.blobs == {second.blob_id: PNG}


async def test_a_file_that_outgrows_the_threshold_is_uploaded_whole() -> None:
    store = Store()
    held = holder(store, 64)
    blob = await held.upload("a.png", "image/png", pieces(PNG[:50], PNG[50:80], PNG[80:]))
    assert store.blobs == {blob.blob_id: PNG}
    assert held.held == {}


async def test_held_files_are_stored_on_demand_and_discarded_where_they_are() -> None:
    store = Store()
    held = holder(store, 1024)
    first = await held.upload("a.png", "image/png", pieces(PNG))
    await held.discard(first.blob_id)  # only held: nothing to delete anywhere
    assert store.deleted == [] and held.held == {}
    again = holder(store, 1024)
    kept = await again.upload("a.png", "image/png", pieces(PNG))
    ids = await again.store()
    assert store.blobs[ids[kept.blob_id]] == PNG
    await again.discard(kept.blob_id)
    assert store.deleted == [ids[kept.blob_id]]


class Form:
    warnings = ("w",)

    def __init__(self, uploads: tuple[UploadedFile, ...]) -> None:
        self.uploads = uploads

    def job_request(self) -> jobs_pb2.CreateJobRequest:
        return jobs_pb2.CreateJobRequest(
            files=[jobs_pb2.FileSpec(blob_id=u.blob_id) for u in self.uploads]
        )


def test_a_stored_form_names_the_stored_blobs() -> None:
    uploads = tuple(
        UploadedFile("files", name, "image/png", blob_id, 1, "png", "image")
        for name, blob_id in (("a.png", "held-1"), ("b.png", "other"))
    )
    stored: Any = StoredForm(Form(uploads), {"held-1": "stored-0"})
    assert [u.blob_id for u in stored.uploads] == ["stored-0", "other"]
    assert [f.blob_id for f in stored.job_request().files] == ["stored-0", "other"]
    assert not stored.job_request().HasField("extra_file")
    assert stored.warnings == ("w",)


async def test_an_orchestrator_without_convert_asks_for_the_job_path() -> None:
    # A real gRPC server that serves no method (an orchestrator before Convert existed).
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = JobClient(f"127.0.0.1:{port}", timeout=5)
    try:
        answer = await client.convert(jobs_pb2.ConvertRequest(source=PNG), deadline_seconds=5)
    finally:
        await client.close()
        await server.stop(None)
    assert answer.durable
