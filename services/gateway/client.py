"""The gateway's only backend: the orchestrator's JobService over gRPC.

Every failure comes back as a `MeshError` (the orchestrator's own, or UNAVAILABLE when it
cannot be reached), so routes never see gRPC types.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from mesh import tracing
from mesh.errors import MeshError, Reason, from_grpc_error
from mesh.jobs.v1 import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 256 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class ByteRange:
    """A single HTTP byte range: `length` bytes from `offset` (0: to the end), or the last
    `suffix_length` bytes."""

    offset: int = 0
    length: int = 0
    suffix_length: int = 0


class JobClient:
    def __init__(self, target: str, timeout: float, upload_timeout: float | None = None) -> None:
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.enable_retries", 1),
            ],
        )
        self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout
        # One file's UploadBlob call: it lasts as long as the client sends (None: no deadline).
        self._upload_timeout = upload_timeout

    async def close(self) -> None:
        await self._channel.close()

    async def healthy(self) -> bool:
        """True when the orchestrator answers and reports SERVING (it can reach NATS)."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2.0
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def upload(
        self, tenant: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> jobs_pb2.BlobRef:
        """Streams the file to UploadBlob. When the orchestrator ends the call while a
        request is on its way (the broker lost mid-upload), gRPC fails the send as "Internal
        error from Core" and puts that in place of the status the orchestrator sent, which
        `_FirstStatus` keeps. (A request iterator, not `call.write`: the tracing interceptor
        awaits the call's end before it hands the call over, so writes would never start.)"""

        async def requests() -> AsyncIterator[jobs_pb2.UploadBlobRequest]:
            header = jobs_pb2.BlobHeader(
                tenant=tenant, filename=filename, content_type=content_type
            )
            yield jobs_pb2.UploadBlobRequest(header=header)
            async for chunk in chunks:
                # gRPC messages stay small whatever size the multipart parser hands us.
                for start in range(0, len(chunk), UPLOAD_CHUNK):
                    yield jobs_pb2.UploadBlobRequest(chunk=chunk[start : start + UPLOAD_CHUNK])

        call = self._stub.UploadBlob(
            requests(), timeout=self._upload_timeout, metadata=tracing.metadata()
        )
        first = _FirstStatus(call)
        try:
            response: jobs_pb2.UploadBlobResponse = await call
        except grpc.RpcError as error:
            raise _upload_error(first.error or error, self._upload_timeout) from None
        return response.blob

    async def delete_blob(self, tenant: str, blob_id: str) -> None:
        with contextlib.suppress(MeshError):
            await self._call(
                self._stub.DeleteBlob, jobs_pb2.DeleteBlobRequest(tenant=tenant, blob_id=blob_id)
            )

    async def create_job(
        self, request: jobs_pb2.CreateJobRequest, deadline_seconds: float | None = None
    ) -> jobs_pb2.CreateJobResponse:
        """`deadline_seconds` replaces the usual deadline (a sourceUrl is fetched during the
        call)."""
        response: jobs_pb2.CreateJobResponse = await self._call(
            self._stub.CreateJob, request, deadline_seconds
        )
        return response

    async def convert(
        self, request: jobs_pb2.ConvertRequest, deadline_seconds: float
    ) -> jobs_pb2.ConvertResponse:
        """A small conversion answered inline (or `durable`: create the job instead, also
        what an orchestrator without Convert, during a rolling upgrade, asks for)."""
        try:
            response: jobs_pb2.ConvertResponse = await self._stub.Convert(
                request, timeout=deadline_seconds, metadata=tracing.metadata()
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED and not rpc_status.from_call(error):
                return jobs_pb2.ConvertResponse(durable=True)
            raise from_grpc_error(error) from None
        return response

    async def get_job(self, tenant: str, job_id: str) -> jobs_pb2.Job:
        job: jobs_pb2.Job = await self._call(
            self._stub.GetJob, jobs_pb2.GetJobRequest(tenant=tenant, job_id=job_id)
        )
        return job

    async def list_jobs(self, request: jobs_pb2.ListJobsRequest) -> jobs_pb2.ListJobsResponse:
        response: jobs_pb2.ListJobsResponse = await self._call(self._stub.ListJobs, request)
        return response

    async def cancel_job(self, tenant: str, job_id: str) -> jobs_pb2.Job:
        job: jobs_pb2.Job = await self._call(
            self._stub.CancelJob, jobs_pb2.CancelJobRequest(tenant=tenant, job_id=job_id)
        )
        return job

    async def watch_job(self, tenant: str, job_id: str) -> AsyncIterator[jobs_pb2.Job]:
        """The job now, then after each change, until its terminal state; errors as MeshError.

        The first message is awaited before returning so that a missing job is a plain 404.
        """
        call = self._stub.WatchJob(jobs_pb2.WatchJobRequest(tenant=tenant, job_id=job_id))
        try:
            first = await call.read()
        except grpc.RpcError as error:
            raise from_grpc_error(error) from None

        async def updates() -> AsyncIterator[jobs_pb2.Job]:
            try:
                if first is grpc.aio.EOF:
                    return
                yield first
                while (message := await call.read()) is not grpc.aio.EOF:
                    yield message
            except grpc.RpcError as error:
                raise from_grpc_error(error) from None
            finally:
                call.cancel()

        return updates()

    async def read_output(
        self,
        tenant: str,
        job_id: str,
        index: int,
        *,
        archive: bool = False,
        byte_range: ByteRange | None = None,
    ) -> tuple[jobs_pb2.OutputHeader, AsyncIterator[bytes]]:
        """The output's header, then its bytes as a stream (the call stays open meanwhile).
        With `archive`, the job's zip of every output instead of one file."""
        request = jobs_pb2.ReadOutputRequest(
            tenant=tenant, job_id=job_id, index=index, archive=archive
        )
        if byte_range is not None:
            request.offset = byte_range.offset
            request.length = byte_range.length
            request.suffix_length = byte_range.suffix_length
        call = self._stub.ReadOutput(request, metadata=tracing.metadata())
        try:
            first = await call.read()
        except grpc.RpcError as error:
            raise from_grpc_error(error) from None
        if first is grpc.aio.EOF or first.WhichOneof("part") != "header":
            call.cancel()
            raise MeshError(Reason.INTERNAL)

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        return
                    yield message.chunk
            finally:
                call.cancel()

        return first.header, body()

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: Any,
        deadline_seconds: float | None = None,
    ) -> Any:
        try:
            return await method(
                request, timeout=deadline_seconds or self._timeout, metadata=tracing.metadata()
            )
        except grpc.RpcError as error:
            raise from_grpc_error(error) from None


class _FirstStatus:
    """The first status a call ends with, as an RpcError (None while running or when OK)."""

    def __init__(self, call: Any) -> None:
        self.error: grpc.aio.AioRpcError | None = None
        call.add_done_callback(self._keep)

    def _keep(self, call: Any) -> None:
        # Called at once when the status is set, and again when it is replaced.
        if self.error is not None:
            return
        code = _now(call.code())
        if code != grpc.StatusCode.OK:
            self.error = grpc.aio.AioRpcError(
                code, grpc.aio.Metadata(), _now(call.trailing_metadata()), _now(call.details())
            )


def _now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs to its end a coroutine that cannot suspend: an accessor of a finished call."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("the call's status is not set yet")


def _upload_error(error: grpc.RpcError, deadline: float | None) -> MeshError:
    """The orchestrator's error; when gRPC hid it behind a failed send, the upload was cut
    off by the other side for a reason this side cannot see: retry later (503). Past the
    call's own deadline, the file arrived more slowly than the guard's rate allows (408)."""
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not rpc_status.from_call(error):
        return MeshError(
            Reason.REQUEST_TIMEOUT,
            f"The file did not arrive within {deadline or 0:g} s; send it again.",
            limit="upload_deadline_seconds",
            max=deadline,
        )
    hidden = error.code() == grpc.StatusCode.INTERNAL and not rpc_status.from_call(error)
    if hidden and error.details() == "Internal error from Core":
        log.warning("an upload was ended by the orchestrator while sending")
        return MeshError(Reason.UNAVAILABLE, "The upload was cut off; retry later.")
    return from_grpc_error(error)
