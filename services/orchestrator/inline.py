"""The Convert RPC: a small synchronous conversion without the durable job.

The gateway sends one file's bytes with the request CreateJob would get (a conversion or
compression of that file, or a media tool's run over it). It is validated and
routed exactly as CreateJob would (the same record is built, with the same typed refusals, the
tenant's limit of unfinished jobs is checked), then sent to a worker of its service over NATS
request/reply (`mesh.bus.inline`); the worker's result is applied to the record as the result
consumer would apply it, so the answer shows what WatchJob would have ended with. Nothing is
written: no blob, no KV revision, no task or result message. Jobs and files are counted as the
store counts them.

Whatever this path cannot or need not do is answered `durable` before anything is counted, and
the gateway creates the job as usual: no worker listening, a worker that went silent (it died)
or asked for it, a source or output too large to carry, and every request that is more than
one plain conversion (several files, a sourceUrl, callbacks, an Idempotency-Key, an archive).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import posixpath
from collections.abc import Callable

from opentelemetry.trace import SpanKind

from mesh import telemetry, tracing
from mesh.bus import inline
from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.formats import SNIFF_BYTES, sniff
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator import specs, state, tally, tooljobs
from services.orchestrator.jobs import JobCreator, job_id_for

log = logging.getLogger(__name__)

DURABLE = jobs_pb2.ConvertResponse(durable=True)
_TYPES = frozenset(
    {
        jobs_pb2.JOB_TYPE_UNSPECIFIED,
        jobs_pb2.JOB_TYPE_CONVERT,
        jobs_pb2.JOB_TYPE_COMPRESS,
        jobs_pb2.JOB_TYPE_TOOL,
    }
)
# Kept back from the caller's deadline: the answer still has to travel.
_MARGIN_SECONDS = 0.5
_DEFAULT_SECONDS = 60.0


def takes(request: jobs_pb2.CreateJobRequest) -> bool:
    """Whether a request is one plain conversion of one file (or a media tool's run over one
    file, without a second file) this path may run."""
    return (
        request.job_type in _TYPES
        and len(request.files) == 1
        and not request.files[0].source_url
        and not request.HasField("extra_file")
        and not request.callback_url
        and not request.request_id
        and not request.create_archive
    )


class InlineConversions:
    def __init__(
        self,
        requester: inline.InlineRequester | None,
        creator: JobCreator,
        check_admission: Callable[[str], None],
        max_upload_bytes: int,
    ) -> None:
        self._requester = requester
        self._creator = creator
        self._check_admission = check_admission
        self._max_upload_bytes = max_upload_bytes
        self._running: collections.Counter[str] = collections.Counter()

    def running(self, tenant: str) -> int:
        """The tenant's conversions under way on this path (unfinished jobs, for its limit)."""
        return self._running[tenant]

    async def convert(
        self, request: jobs_pb2.ConvertRequest, seconds_left: float | None
    ) -> jobs_pb2.ConvertResponse:
        job_request = request.job
        requester = self._requester
        if requester is None or not takes(job_request):
            return DURABLE
        source = request.source
        if len(source) > self._max_upload_bytes:
            raise MeshError(
                Reason.TOO_LARGE, "The file is too large.", max_bytes=self._max_upload_bytes
            )
        sniffed = sniff(source[:SNIFF_BYTES])
        blob = jobs_pb2.BlobRef(
            size=len(source),
            sha256=hashlib.sha256(source).hexdigest(),
            detected_format=sniffed.format,
            family=sniffed.family.value,
        )
        upload = state_pb2.UploadRecord(
            tenant=job_request.tenant, blob=blob, filename=request.filename
        )
        record = self._creator.build(job_request, [upload], job_id_for(job_request.tenant, ""))
        task = record.tasks[0]
        if task.stage != state_pb2.FILE_STAGE_CONVERT or not task.service:
            return DURABLE
        tenant = job_request.tenant
        self._check_admission(tenant)
        if record.job.job_type == jobs_pb2.JOB_TYPE_TOOL:
            spec = tooljobs.task_spec(record, task)
        else:
            spec = specs.file_spec(record, task)
        seconds = (seconds_left or _DEFAULT_SECONDS) - _MARGIN_SECONDS
        message = tasks_pb2.InlineTask(task=spec.to_proto(), source=source, seconds=seconds)
        if message.ByteSize() > requester.max_payload:
            return DURABLE
        self._running[tenant] += 1
        telemetry.SYNC_INLINE_RUNNING.inc()
        try:
            return await self._request(requester, record, message, spec)
        finally:
            telemetry.SYNC_INLINE_RUNNING.dec()
            self._running[tenant] -= 1
            if not self._running[tenant]:
                del self._running[tenant]

    async def _request(
        self,
        requester: inline.InlineRequester,
        record: state_pb2.JobRecord,
        message: tasks_pb2.InlineTask,
        spec: TaskSpec,
    ) -> jobs_pb2.ConvertResponse:
        service = record.tasks[0].service
        source = message.source
        with tracing.span(
            f"dispatch {service}",
            kind=SpanKind.PRODUCER,
            attributes={
                **tracing.task_attributes(spec),
                "messaging.system": "nats",
                "messaging.destination.name": inline.subject(service),
                "convertmesh.inline": True,
            },
        ):
            reply = await requester.request(service, message, message.seconds, tracing.inject({}))
            if reply.result is None:
                tracing.annotate({"convertmesh.durable": reply.why})
        if reply.result is None:
            log.info("sync conversion goes the durable way", extra={"why": reply.why})
            telemetry.SYNC_INLINE.labels(service, reply.why).inc()
            return DURABLE
        return self._finish(record, reply.result, reply.output, len(source))

    def _finish(
        self,
        record: state_pb2.JobRecord,
        result: tasks_pb2.Result,
        output: bytes,
        source_size: int,
    ) -> jobs_pb2.ConvertResponse:
        """Applies the worker's result as the result consumer would, counting what the store
        counts around a job's writes (its creation, then the file and job turning terminal)."""
        record.undispatched = False
        tally.created(record)
        before = tally.snapshot(record)
        state.apply_result(record, result)
        tally.changed(before, record)
        telemetry.UPLOAD_BYTES.inc(source_size)
        item = record.job.files[0]
        service = record.tasks[0].service
        if item.status != jobs_pb2.FILE_STATUS_COMPLETED:
            telemetry.SYNC_INLINE.labels(service, "failed").inc()
            return jobs_pb2.ConvertResponse(job=record.job)
        telemetry.SYNC_INLINE.labels(service, "converted").inc()
        telemetry.DOWNLOAD_BYTES.inc(len(output))
        name = item.output_filename or specs.output_filename(
            posixpath.basename(item.filename), item.output_format
        )
        header = jobs_pb2.OutputHeader(
            filename=name,
            mime_type=item.mime_type,
            size=len(output),
            sha256=hashlib.sha256(output).hexdigest(),
            range_start=0,
            range_length=len(output),
        )
        return jobs_pb2.ConvertResponse(job=record.job, header=header, output=output)
