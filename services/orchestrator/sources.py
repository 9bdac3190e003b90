"""A job's sources: each `FileSpec` names an uploaded blob, or a `source_url` that is fetched
here, while the job is created, into the blob store as an upload would arrive (`fetch`: the
SSRF guard, the size and time limits, the type sniffed from the bytes).

The fetch is bounded by the upload limit (or the smaller cap the request gives: a sync route's
budget) and by the fetch time limit, never beyond the caller's own deadline, so a refused or
slow URL is answered as the error it is rather than as a lost call.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from urllib.parse import urlsplit

from nats.js import JetStreamContext

from mesh import blobs, telemetry, tracing
from mesh.bus import streams
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import fetch, urlguard
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)

# Kept back from the caller's deadline to answer with the fetch's own error.
DEADLINE_MARGIN_SECONDS = 1.0


class Sources:
    def __init__(
        self,
        js: JetStreamContext,
        store: JobStore,
        allow: urlguard.Allowlist,
        limits: fetch.FetchLimits,
    ) -> None:
        self._js = js
        self._store = store
        self._allow = allow
        self._limits = limits

    def limits_for(self, max_bytes: int, seconds_left: float | None) -> fetch.FetchLimits:
        """The fetch limits of one request: its byte cap and what is left of its deadline."""
        limits = self._limits
        if 0 < max_bytes < limits.max_bytes:
            limits = dataclasses.replace(limits, max_bytes=max_bytes)
        if seconds_left is not None:
            budget = max(seconds_left - DEADLINE_MARGIN_SECONDS, 0.1)
            if budget < limits.total_seconds:
                limits = dataclasses.replace(limits, total_seconds=budget)
        return limits

    async def fetch_urls(
        self, tenant: str, specs: list[jobs_pb2.FileSpec], limits: fetch.FetchLimits
    ) -> list[str]:
        """Fetches every spec's `source_url` into a new upload and points the spec at it;
        returns the new blob ids. On failure the blobs fetched so far are removed."""
        fetched: list[str] = []
        try:
            for index, spec in enumerate(specs):
                if not spec.source_url:
                    continue
                if spec.blob_id:
                    raise MeshError(
                        Reason.INVALID_FIELD,
                        "A file is an uploaded blob or a sourceUrl, not both.",
                        fields={"sourceUrl": "must not be given with an uploaded file"},
                    )
                spec.blob_id = await self._traced_fetch(tenant, index, spec.source_url, limits)
                fetched.append(spec.blob_id)
                # The job is defined by the bytes, as for an upload (the idempotency hash).
                spec.source_url = ""
        except BaseException:
            await self.forget(fetched)
            raise
        return fetched

    async def _traced_fetch(
        self, tenant: str, index: int, url: str, limits: fetch.FetchLimits
    ) -> str:
        """`_fetch` as the `fetch source` stage of the job's trace (the URL's host only: its
        path and query may carry a presigned signature), counted by outcome."""
        started = time.perf_counter()
        attributes: dict[str, str | int] = {
            "convertmesh.tenant": tenant,
            "convertmesh.file_index": index,
            "server.address": urlsplit(url).netloc,
        }
        outcome = "succeeded"
        with tracing.span("fetch source", attributes=attributes):
            try:
                return await self._fetch(tenant, url, limits)
            except MeshError as error:
                outcome = error.reason.value
                tracing.fail(error.reason.value, error.message)
                raise
            except BaseException:
                outcome = Reason.INTERNAL.value
                raise
            finally:
                telemetry.SOURCE_FETCHES.labels(outcome).inc()
                telemetry.SOURCE_FETCH_SECONDS.observe(time.perf_counter() - started)

    async def _fetch(self, tenant: str, url: str, limits: fetch.FetchLimits) -> str:
        blob_id = uuid.uuid4().hex
        got = await fetch.fetch_to_store(
            self._js,
            url,
            bucket=streams.BLOBS_BUCKET,
            name=f"src/{blob_id}",
            allow=self._allow,
            limits=limits,
        )
        blob = jobs_pb2.BlobRef(
            blob_id=blob_id,
            size=got.blob.size,
            sha256=got.blob.sha256,
            detected_format=got.sniffed.format,
            family=got.sniffed.family.value,
        )
        try:
            await self._store.put_upload(
                blob_id, state_pb2.UploadRecord(tenant=tenant, blob=blob, filename=got.filename)
            )
        except BaseException:
            await blobs.delete(self._js, streams.BLOBS_BUCKET, f"src/{blob_id}")
            raise
        telemetry.SOURCE_FETCH_BYTES.inc(got.blob.size)
        tracing.annotate(
            {
                "convertmesh.input_bytes": got.blob.size,
                "convertmesh.source_format": got.sniffed.format,
            }
        )
        log.info("source fetched", extra={"blob": blob_id, "bytes": got.blob.size})
        return blob_id

    async def forget(self, blob_ids: list[str]) -> None:
        """Removes fetched sources no job took (the request was refused)."""
        for blob_id in blob_ids:
            try:
                await blobs.delete(self._js, streams.BLOBS_BUCKET, f"src/{blob_id}")
                await self._store.delete_upload(blob_id)
            except Exception:
                log.warning("could not remove fetched source %s", blob_id, exc_info=True)
