"""The gRPC JobService: every call the gateway (or an internal caller) makes.

Each call is a span (the grpc aio instrumentation continues the caller's trace) and is counted
by method and status code; a call that fails says why on its span.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import posixpath
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import nats.errors
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from nats.js import JetStreamContext

from mesh import blobs, telemetry, tracing
from mesh.bus import streams
from mesh.bus.inline import InlineRequester
from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS, SNIFF_BYTES, sniff
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from mesh.state.v1 import state_pb2
from services.orchestrator import specs, state, upload_stream
from services.orchestrator.index import JobIndex
from services.orchestrator.inline import InlineConversions
from services.orchestrator.jobs import JobCreator
from services.orchestrator.settings import Settings
from services.orchestrator.sources import Sources
from services.orchestrator.store import JobStore
from services.orchestrator.watches import JobWatches

log = logging.getLogger(__name__)

T = TypeVar("T")
SERVICE_NAME = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
MAX_PAGE = 100


def _as_mesh_error(exc: Exception) -> MeshError:
    if isinstance(exc, MeshError):
        return exc
    if isinstance(exc, nats.errors.Error | TimeoutError):
        log.warning("nats unavailable: %r", exc)
        return MeshError(Reason.UNAVAILABLE)
    log.exception("unexpected error", exc_info=exc)
    return MeshError(Reason.INTERNAL)


def unary(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        observed = _Observed(method.__name__)
        try:
            return await method(self, request, context)
        except Exception as exc:
            await context.abort_with_status(observed.failed(exc).to_grpc_status())
            raise  # unreachable: abort raises
        finally:
            observed.done()

    return wrapper


def streaming(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[T]]:
    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        observed = _Observed(method.__name__)
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            await context.abort_with_status(observed.failed(exc).to_grpc_status())
        finally:
            observed.done()

    return wrapper


class _Observed:
    """One call's count and time (`convertmesh_grpc_*`), and its failure on its span."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()

    def failed(self, exc: Exception) -> MeshError:
        error = _as_mesh_error(exc)
        self.code = error.reason.grpc_code
        tracing.fail(error.reason.value, error.message)
        return error

    def done(self) -> None:
        telemetry.GRPC_REQUESTS.labels(self.method, self.code.name).inc()
        telemetry.GRPC_SECONDS.labels(self.method).observe(time.perf_counter() - self.started)


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        js: JetStreamContext,
        store: JobStore,
        index: JobIndex,
        settings: Settings,
        requester: InlineRequester | None = None,
        *,
        watches: JobWatches | None = None,
    ) -> None:
        self._js = js
        self._store = store
        # The replica's shared job watch; without one given, one is started at the first
        # WatchJob call (the service's own process then has no reconnect signal to give it,
        # and relies on the watch's consumer check).
        self._watches = watches
        self._watches_started = watches is not None
        self._watches_lock = asyncio.Lock()
        self._index = index
        self._settings = settings
        self._creator = JobCreator(
            js,
            store,
            sources=Sources(js, store, settings.callbacks.allow, settings.fetch),
            max_files=settings.max_files_per_job,
            admit=self._admit,
            rar_available=settings.rar_available,
            callback_allow=settings.callbacks.allow,
        )
        self._inline = InlineConversions(
            requester, self._creator, self._check_admission, settings.max_upload_bytes
        )

    async def _output(self, request: jobs_pb2.ReadOutputRequest) -> tuple[str, str, str]:
        """The output asked for. A completed file's output (or zip) never changes, so a
        remembered record that has it completed answers without reading the bucket."""
        remembered = self._store.remembered(request.tenant, request.job_id)
        found = _remembered_output(remembered, request)
        if found is not None:
            return found
        record, _ = await self._store.get(request.tenant, request.job_id)
        return _output_of(record, request)

    async def _shared_watches(self) -> JobWatches:
        if not self._watches_started:
            async with self._watches_lock:
                if self._watches is None:
                    self._watches = JobWatches(self._js, self._store)
                    await self._watches.start()
                self._watches_started = True
        assert self._watches is not None
        return self._watches

    async def stop_watches(self) -> None:
        if self._watches is not None:
            await self._watches.stop()

    @property
    def creator(self) -> JobCreator:
        return self._creator

    def _admit(self, record: state_pb2.JobRecord) -> None:
        """Refuses a new job while its tenant has too many unfinished ones (429)."""
        self._check_admission(record.job.tenant)
        self._index.apply(record)

    def _check_admission(self, tenant: str) -> None:
        # Conversions answered inline count as unfinished jobs while they run.
        active = self._index.active_jobs(tenant) + self._inline.running(tenant)
        if active >= self._settings.max_active_jobs_per_tenant:
            raise MeshError(
                Reason.RATE_LIMITED,
                f"This key has {active} unfinished jobs, the most allowed at once; retry when "
                "some have finished.",
                limit="active_jobs_per_tenant",
                max=self._settings.max_active_jobs_per_tenant,
            )

    @unary
    async def UploadBlob(  # noqa: N802 - gRPC method names are the proto's
        self,
        request_iterator: AsyncIterator[jobs_pb2.UploadBlobRequest],
        context: grpc.aio.ServicerContext,
    ) -> jobs_pb2.UploadBlobResponse:
        messages = upload_stream.paced(request_iterator, self._settings.upload_idle_seconds)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise MeshError(Reason.INVALID_FIELD, "An upload must start with its header.")
        header = first.header
        blob_id = uuid.uuid4().hex
        head = bytearray()

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise MeshError(Reason.INVALID_FIELD, "Only one header per upload.")
                if len(head) < SNIFF_BYTES:
                    head.extend(message.chunk[: SNIFF_BYTES - len(head)])
                yield message.chunk

        info = await blobs.write_stream(
            self._js,
            streams.BLOBS_BUCKET,
            f"src/{blob_id}",
            chunks(),
            max_bytes=self._settings.max_upload_bytes,
        )
        sniffed = sniff(bytes(head))
        telemetry.UPLOAD_BYTES.inc(info.size)
        tracing.annotate(
            {
                "convertmesh.tenant": header.tenant,
                "convertmesh.input_bytes": info.size,
                "convertmesh.source_format": sniffed.format,
            }
        )
        blob = jobs_pb2.BlobRef(
            blob_id=blob_id,
            size=info.size,
            sha256=info.sha256,
            detected_format=sniffed.format,
            family=sniffed.family.value,
        )
        await self._store.put_upload(
            blob_id,
            state_pb2.UploadRecord(tenant=header.tenant, blob=blob, filename=header.filename),
        )
        return jobs_pb2.UploadBlobResponse(blob=blob)

    @unary
    async def DeleteBlob(  # noqa: N802
        self, request: jobs_pb2.DeleteBlobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.DeleteBlobResponse:
        await self._store.get_upload(request.tenant, request.blob_id)
        await blobs.delete(self._js, streams.BLOBS_BUCKET, f"src/{request.blob_id}")
        await self._store.delete_upload(request.blob_id)
        return jobs_pb2.DeleteBlobResponse()

    @unary
    async def CreateJob(  # noqa: N802
        self, request: jobs_pb2.CreateJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CreateJobResponse:
        _check_formats(request)
        created = await self._creator.create(request, context.time_remaining())
        tracing.annotate(
            {
                "convertmesh.tenant": request.tenant,
                "convertmesh.job_id": created.job.job_id,
                "convertmesh.files": len(request.files),
                "convertmesh.replayed": created.replayed,
            }
        )
        return created

    @unary
    async def Convert(  # noqa: N802
        self, request: jobs_pb2.ConvertRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ConvertResponse:
        _check_formats(request.job)
        answer = await self._inline.convert(request, context.time_remaining())
        tracing.annotate(
            {
                "convertmesh.tenant": request.job.tenant,
                "convertmesh.input_bytes": len(request.source),
                "convertmesh.durable": answer.durable,
            }
        )
        if not answer.durable:
            tracing.annotate({"convertmesh.job_id": answer.job.job_id})
        return answer

    @unary
    async def GetJob(  # noqa: N802
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        record, _ = await self._store.get(request.tenant, request.job_id)
        return record.job

    @unary
    async def ListJobs(  # noqa: N802
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        limit = min(max(request.limit or 20, 1), MAX_PAGE)
        job_ids, total = self._index.page(
            request.tenant, limit, max(request.offset, 0), request.status
        )
        jobs = await self._store.fetch_jobs(request.tenant, job_ids)
        for gone in set(job_ids) - {job.job_id for job in jobs}:
            self._index.forget(request.tenant, gone)
        return jobs_pb2.ListJobsResponse(jobs=jobs, total=total)

    @unary
    async def CancelJob(  # noqa: N802
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.Job:
        def change(record: state_pb2.JobRecord) -> bool:
            state.cancel(record)
            return True

        record, _ = await self._store.mutate(request.tenant, request.job_id, change)
        await self._store.settle(task.task_id for task in record.tasks)
        return record.job

    @streaming
    async def WatchJob(  # noqa: N802
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.Job]:
        watches = await self._shared_watches()
        # aclosing: the watch leaves the shared watch's fan-out as soon as this call ends.
        async with contextlib.aclosing(watches.watch(request.tenant, request.job_id)) as records:
            async for record in records:
                yield record.job
                if state.is_terminal(record.job):
                    return

    @streaming
    async def ReadOutput(  # noqa: N802
        self, request: jobs_pb2.ReadOutputRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.ReadOutputResponse]:
        name, filename, mime_type = await self._output(request)
        info = await blobs.info(self._js, streams.BLOBS_BUCKET, name)
        start, count = byte_range(request, info.size)
        yield jobs_pb2.ReadOutputResponse(
            header=jobs_pb2.OutputHeader(
                filename=filename,
                mime_type=mime_type,
                size=info.size,
                sha256=info.sha256,
                range_start=start,
                range_length=count,
            )
        )
        chunks = blobs.read_stream(self._js, streams.BLOBS_BUCKET, name, known=info)
        async with contextlib.aclosing(chunks):
            async for piece in ranged(chunks, start, count):
                telemetry.DOWNLOAD_BYTES.inc(len(piece))
                yield jobs_pb2.ReadOutputResponse(chunk=piece)


def _check_formats(request: jobs_pb2.CreateJobRequest) -> None:
    for spec in request.files:
        if spec.options.format and spec.options.format not in OUTPUT_FORMATS:
            raise MeshError(
                Reason.INVALID_FIELD,
                f"Unknown output format {spec.options.format!r}.",
                fields={"format": "must be one of " + ", ".join(OUTPUT_FORMATS)},
            )


def byte_range(request: jobs_pb2.ReadOutputRequest, size: int) -> tuple[int, int]:
    """(first byte, byte count) of what the request asks for, within an output of `size`."""
    if request.suffix_length > 0:
        count = min(request.suffix_length, size)
        return size - count, count
    start = max(request.offset, 0)
    if start and start >= size:
        raise MeshError(Reason.RANGE_NOT_SATISFIABLE, size=size)
    end = size if request.length <= 0 else min(size, start + request.length)
    return start, end - start


async def ranged(chunks: AsyncIterator[bytes], start: int, count: int) -> AsyncIterator[bytes]:
    """The `count` bytes from `start` of a stream of chunks; chunks before are skipped unread
    by the client, and reading stops at the end of the range."""
    position = 0
    end = start + count
    async for chunk in chunks:
        following = position + len(chunk)
        if following > start and position < end:
            yield chunk[max(start - position, 0) : min(end - position, len(chunk))]
        position = following
        if position >= end:
            return


def _remembered_output(
    record: state_pb2.JobRecord | None, request: jobs_pb2.ReadOutputRequest
) -> tuple[str, str, str] | None:
    if record is None:
        return None
    try:
        return _output_of(record, request)
    except MeshError:
        return None


def _output_of(
    record: state_pb2.JobRecord, request: jobs_pb2.ReadOutputRequest
) -> tuple[str, str, str]:
    """(blob name, download name, MIME type) of a file's output or of the job's zip."""
    job = record.job
    if request.archive:
        if not job.HasField("archive") or job.archive.status != jobs_pb2.FILE_STATUS_COMPLETED:
            raise MeshError(Reason.NOT_FOUND, "This job has no archive (yet).")
        return record.archive_blob, f"{job.job_id}.zip", OUTPUT_FORMATS["zip"].mime_type
    if not 0 <= request.index < len(job.files):
        raise MeshError(Reason.NOT_FOUND, "No file with this index in the job.")
    item = job.files[request.index]
    if item.status != jobs_pb2.FILE_STATUS_COMPLETED:
        raise MeshError(Reason.CONFLICT, _no_output(request.index, item))
    name = item.output_filename or specs.output_filename(
        posixpath.basename(item.filename), item.output_format
    )
    return record.tasks[request.index].output_blob, name, item.mime_type


def _no_output(index: int, item: jobs_pb2.FileResult) -> str:
    """Why a file has nothing to download, in words that say whether waiting helps."""
    if item.status == jobs_pb2.FILE_STATUS_FAILED:
        code = f" ({item.error_code})" if item.error_code else ""
        return f"File {index} failed{code} and has no output: {item.error_message}"
    if item.status == jobs_pb2.FILE_STATUS_CANCELLED:
        return f"File {index} was cancelled and has no output."
    return f"File {index} is still being converted; its output is not ready yet."


def create_server(
    servicer: JobService, health: HealthServicer, host: str, port: int
) -> tuple[grpc.aio.Server, int]:
    """A server with the JobService, health and reflection; port 0 picks a free port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ]
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
