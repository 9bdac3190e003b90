"""The sync routes' first file, held in memory while it is small (SYNC_INLINE_MAX_BYTES).

A sync conversion of one small file is sent whole to the orchestrator's Convert, which has a
worker convert it without storing anything (`services.orchestrator.inline`). While the form is
read the first file's bytes are therefore kept here instead of streamed to UploadBlob; a file
that grows past the threshold is streamed on as any upload (what was held first), and every
other file of the form is uploaded as usual. When the request goes the durable way after all
(several files, or the orchestrator says `durable`), `store` uploads what is held and
`StoredForm` names the stored blobs in place of the held ones.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from mesh.formats import SNIFF_BYTES, sniff
from mesh.jobs.v1 import jobs_pb2
from services.gateway.client import JobClient
from services.gateway.submission import JobSource
from services.gateway.uploads import StoredBlob, UploadedFile

HELD_PREFIX = "held-"


@dataclass(frozen=True)
class HeldBlob:
    """What the form reader is told about a held file: its format sniffed as UploadBlob
    would."""

    blob_id: str
    size: int
    detected_format: str
    family: str


@dataclass(frozen=True)
class Held:
    filename: str
    content_type: str
    data: bytes


class Holder:
    """The upload and discard of one sync form: the first file held while small."""

    def __init__(self, client: JobClient, tenant: str, max_bytes: int) -> None:
        self._client = client
        self._tenant = tenant
        self._max_bytes = max_bytes
        self._files = 0
        self.held: dict[str, Held] = {}
        self._stored: dict[str, str] = {}

    async def upload(
        self, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> StoredBlob:
        self._files += 1
        if self._files > 1 or self._max_bytes <= 0:
            return await self._client.upload(self._tenant, filename, content_type, chunks)
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > self._max_bytes:
                rest = _then(bytes(buffer), chunks)
                return await self._client.upload(self._tenant, filename, content_type, rest)
        data = bytes(buffer)
        blob_id = HELD_PREFIX + uuid.uuid4().hex
        self.held[blob_id] = Held(filename, content_type, data)
        sniffed = sniff(data[:SNIFF_BYTES])
        return HeldBlob(blob_id, len(data), sniffed.format, sniffed.family.value)

    async def discard(self, blob_id: str) -> None:
        self.held.pop(blob_id, None)
        stored = self._stored.pop(blob_id, None)
        if stored is not None:
            await self._client.delete_blob(self._tenant, stored)
        elif not blob_id.startswith(HELD_PREFIX):
            await self._client.delete_blob(self._tenant, blob_id)

    async def store(self) -> Mapping[str, str]:
        """Uploads every held file; returns held id -> stored blob id."""
        for blob_id, held in self.held.items():
            if blob_id not in self._stored:
                blob = await self._client.upload(
                    self._tenant, held.filename, held.content_type, _then(held.data)
                )
                self._stored[blob_id] = blob.blob_id
        return dict(self._stored)


async def _then(first: bytes, rest: AsyncIterator[bytes] | None = None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for chunk in rest:
            yield chunk


F = TypeVar("F", bound=JobSource)


@dataclass(frozen=True)
class StoredForm(Generic[F]):
    """A form whose held files were uploaded: the same form, naming the stored blobs."""

    form: F
    ids: Mapping[str, str]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.form.warnings

    @property
    def uploads(self) -> tuple[UploadedFile, ...]:
        return tuple(
            dataclasses.replace(item, blob_id=self.ids.get(item.blob_id, item.blob_id))
            for item in self.form.uploads
        )

    def job_request(self) -> jobs_pb2.CreateJobRequest:
        request = self.form.job_request()
        given = [*request.files, *([request.extra_file] if request.HasField("extra_file") else [])]
        for spec in given:
            spec.blob_id = self.ids.get(spec.blob_id, spec.blob_id)
        return request
