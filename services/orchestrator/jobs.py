"""Creating jobs: check each file's upload and route, write the record, dispatch its tasks."""

from __future__ import annotations

import hashlib
import logging
import posixpath
import uuid
from collections.abc import Callable

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from mesh import blobs, tracing
from mesh.bus import streams
from mesh.bus.tasks import TaskSpec
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import callbacks, routing, specs, state, tooljobs, urlguard
from services.orchestrator.sources import Sources
from services.orchestrator.store import JobExistsError, JobStore

log = logging.getLogger(__name__)

# Job ids made from an idempotency key live in their own namespace.
_REQUEST_NAMESPACE = uuid.UUID("6f1c1a0e-8a57-4c4e-9d1e-5b9a3f3c2e11")


def job_id_for(tenant: str, request_id: str) -> str:
    """A fresh id, or for a request id the same id every time: retries create nothing new."""
    if not request_id:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{tenant}\x00{request_id}"))


def request_hash(
    request: jobs_pb2.CreateJobRequest,
    uploads: list[state_pb2.UploadRecord],
    extra: state_pb2.UploadRecord | None = None,
) -> str:
    """What makes two requests the same: the files' contents (not their upload ids) and
    every option."""
    stable = jobs_pb2.CreateJobRequest()
    stable.CopyFrom(request)
    stable.request_id = ""
    for spec, upload in zip(stable.files, uploads, strict=True):
        spec.blob_id = upload.blob.sha256
    if extra is not None:
        stable.extra_file.blob_id = extra.blob.sha256
    return hashlib.sha256(stable.SerializeToString(deterministic=True)).hexdigest()


class JobCreator:
    def __init__(
        self,
        js: JetStreamContext,
        store: JobStore,
        *,
        sources: Sources,
        max_files: int,
        admit: Callable[[state_pb2.JobRecord], None],
        rar_available: bool = False,
        callback_allow: urlguard.Allowlist | None = None,
    ) -> None:
        self._sources = sources
        self._callback_allow = callback_allow or urlguard.Allowlist.parse("")
        self._rar_available = rar_available
        self._admit = admit
        self._js = js
        self._store = store
        self._max_files = max_files

    async def create(
        self, request: jobs_pb2.CreateJobRequest, seconds_left: float | None = None
    ) -> jobs_pb2.CreateJobResponse:
        """The new job, or (`replayed`) the job this request id created before. Files given
        as URLs are fetched first, within what is left of the caller's deadline."""
        if not request.files:
            raise MeshError(
                Reason.INVALID_FIELD,
                "At least one file is required.",
                fields={"files": "at least one file is required"},
            )
        if len(request.files) > self._max_files:
            raise MeshError(
                Reason.TOO_LARGE,
                f"A job may have at most {self._max_files} files.",
                limit="files_per_job",
                max=self._max_files,
            )
        callbacks.validate_callback(
            request.callback_url, request.callback_secret, self._callback_allow
        )
        request = _copy(request)
        limits = self._sources.limits_for(request.max_source_bytes, seconds_left)
        specs_ = [*request.files, *([request.extra_file] if request.HasField("extra_file") else [])]
        fetched = await self._sources.fetch_urls(request.tenant, specs_, limits)
        try:
            return await self._create(request)
        except MeshError as error:
            if error.reason not in (Reason.UNAVAILABLE, Reason.INTERNAL):
                await self._sources.forget(fetched)
            raise

    async def _create(self, request: jobs_pb2.CreateJobRequest) -> jobs_pb2.CreateJobResponse:
        tenant = request.tenant
        uploads = [await self._store.get_upload(tenant, spec.blob_id) for spec in request.files]
        extra = (
            await self._store.get_upload(tenant, request.extra_file.blob_id)
            if request.HasField("extra_file")
            else None
        )
        job_id = job_id_for(tenant, request.request_id)
        fingerprint = request_hash(request, uploads, extra)
        if request.request_id:
            existing = await self._existing(tenant, job_id, fingerprint)
            if existing is not None:
                await self._forget_uploads(request, existing)
                return jobs_pb2.CreateJobResponse(job=existing, replayed=True)
        record = self._build(request, uploads, extra, job_id, fingerprint)
        self._admit(record)
        try:
            await self._store.create(record)
        except JobExistsError:
            # A concurrent retry with the same key won the race: answer with its job.
            existing = await self._existing(tenant, job_id, fingerprint)
            if existing is None:
                raise MeshError(Reason.UNAVAILABLE, "Job creation raced; retry.") from None
            await self._forget_uploads(request, existing)
            return jobs_pb2.CreateJobResponse(job=existing, replayed=True)
        await self.dispatch(record)
        return jobs_pb2.CreateJobResponse(job=record.job)

    async def _forget_uploads(self, request: jobs_pb2.CreateJobRequest, job: jobs_pb2.Job) -> None:
        """A retry answered with the first job leaves its own uploads unused: drop them."""
        record, _ = await self._store.get(job.tenant, job.job_id)
        used = {task.source_blob for task in record.tasks}
        used |= {source.blob for task in record.tasks for source in task.tool_sources}
        used |= {task.tool_extra.blob for task in record.tasks if task.HasField("tool_extra")}
        given = [*request.files, *([request.extra_file] if request.HasField("extra_file") else [])]
        for spec in given:
            if f"src/{spec.blob_id}" not in used:
                await blobs.delete(self._js, streams.BLOBS_BUCKET, f"src/{spec.blob_id}")
                await self._store.delete_upload(spec.blob_id)

    async def _existing(self, tenant: str, job_id: str, fingerprint: str) -> jobs_pb2.Job | None:
        try:
            record, _ = await self._store.get(tenant, job_id)
        except MeshError as error:
            if error.reason is Reason.NOT_FOUND:
                return None
            raise
        if record.request_hash != fingerprint:
            raise MeshError(Reason.IDEMPOTENCY_MISMATCH, jobId=job_id)
        if record.undispatched:
            # The first attempt died before all its tasks went out: a retry completes it.
            await self.dispatch(record)
        return record.job

    def build(
        self,
        request: jobs_pb2.CreateJobRequest,
        uploads: list[state_pb2.UploadRecord],
        job_id: str,
    ) -> state_pb2.JobRecord:
        """The record CreateJob would write for `request` and its files' uploads (routing,
        output names, the same typed refusals), for a conversion that is never stored."""
        return self._build(request, uploads, None, job_id, "")

    def _build(
        self,
        request: jobs_pb2.CreateJobRequest,
        uploads: list[state_pb2.UploadRecord],
        extra: state_pb2.UploadRecord | None,
        job_id: str,
        fingerprint: str,
    ) -> state_pb2.JobRecord:
        tenant = request.tenant
        stamp = state.now()
        job = jobs_pb2.Job(
            job_id=job_id,
            tenant=tenant,
            job_type=request.job_type or jobs_pb2.JOB_TYPE_CONVERT,
            status=jobs_pb2.JOB_STATUS_PENDING,
            created_at=stamp,
            updated_at=stamp,
            create_archive=request.create_archive,
        )
        record = state_pb2.JobRecord(
            job=job,
            request_id=request.request_id,
            callback_url=request.callback_url,
            callback_secret=request.callback_secret,
            request_hash=fingerprint,
            undispatched=True,
        )
        job = record.job  # the constructor copied `job`; build on the record's own
        if extra is not None and job.job_type != jobs_pb2.JOB_TYPE_TOOL:
            raise MeshError(
                Reason.INVALID_FIELD,
                "Only a media tool takes a second file.",
                fields={"extraFile": "is read by media tools only"},
            )
        if job.job_type == jobs_pb2.JOB_TYPE_TOOL:
            tooljobs.build_tool(record, request, uploads, extra)
        elif job.job_type == jobs_pb2.JOB_TYPE_TRANSFER:
            tooljobs.build_transfer(record, request, uploads)
            state.derive(record)  # complete already, unless it extracts
        else:
            self._build_conversions(record, request, uploads)
        return record

    def _build_conversions(
        self,
        record: state_pb2.JobRecord,
        request: jobs_pb2.CreateJobRequest,
        uploads: list[state_pb2.UploadRecord],
    ) -> None:
        job = record.job
        job_id = job.job_id
        problems: dict[str, str] = {}
        names: set[str] = set()
        for index, (spec, upload) in enumerate(zip(request.files, uploads, strict=True)):
            blob = upload.blob
            try:
                output = routing.resolve_output(blob.detected_format, spec.options.format)
                service = routing.route(blob.detected_format, output)
                if output == "rar" and not self._rar_available:
                    raise MeshError(
                        Reason.UNSUPPORTED_PAIR,
                        "RAR creation needs the proprietary rar encoder, which this deployment "
                        "does not have (operators: give the archive workers ARCHIVE_RAR_BINARY "
                        "and the orchestrator RAR_OUTPUT_ENABLED=true); choose zip or 7z.",
                        pair=f"{blob.detected_format or 'unknown'}->rar",
                    )
            except MeshError as error:
                problems[str(index)] = error.message
                continue
            options = spec.options
            # A compress keeping the input's format reaches the worker with no format: the
            # pipelines then choose their compress defaults and never return a larger file.
            keeps_format = job.job_type == jobs_pb2.JOB_TYPE_COMPRESS and (
                output == blob.detected_format
            )
            options.format = "" if keeps_format else output
            unpacks = routing.unpacks(blob.detected_format, output)
            filename = spec.filename or upload.filename
            output_name = specs.output_filename(
                posixpath.basename(filename),
                "zip" if unpacks else output,
                blob.detected_format,
            )
            record.tasks.append(
                state_pb2.FileTask(
                    index=index,
                    task_id=specs.file_task_id(job_id, index),
                    service=service,
                    source_blob=f"src/{spec.blob_id}",
                    output_blob=f"out/{job_id}/{index}",
                    options=options,
                    stage=state_pb2.FILE_STAGE_UNPACK if unpacks else state_pb2.FILE_STAGE_CONVERT,
                )
            )
            job.files.append(
                jobs_pb2.FileResult(
                    index=index,
                    filename=filename,
                    output_filename=specs.unique_name(output_name, names),
                    status=jobs_pb2.FILE_STATUS_PENDING,
                    original_size=blob.size,
                    detected_format=blob.detected_format,
                    output_format=output,
                )
            )
        if problems:
            first = next(iter(problems.values()))
            message = first if len(problems) == 1 else f"{len(problems)} files cannot be converted."
            raise MeshError(Reason.UNSUPPORTED_PAIR, message, files=problems)

    async def dispatch(self, record: state_pb2.JobRecord) -> None:
        """Publishes the task of every file not started yet, then records that the job's
        dispatch is complete. A repeat inside the duplicate window is dropped by JetStream
        (`Nats-Msg-Id`); a task repeated after it is settled by the worker's claim."""
        job = record.job
        for task in record.tasks:
            if not task.service:
                continue  # a transfer's stored file: nothing to run
            if job.files[task.index].status != jobs_pb2.FILE_STATUS_PENDING:
                continue  # under way or done: its task went out
            if job.job_type == jobs_pb2.JOB_TYPE_TOOL:
                spec = tooljobs.task_spec(record, task)
            else:
                spec = specs.file_spec(record, task)
            await publish_task(self._js, task.service, spec)
        if record.undispatched:
            await self._store.mark_dispatched(job.tenant, job.job_id)
        log.info("job dispatched", extra={"job": job.job_id, "files": len(record.tasks)})


def _copy(request: jobs_pb2.CreateJobRequest) -> jobs_pb2.CreateJobRequest:
    """A copy the creation may change (fetched URLs become blob ids)."""
    copy = jobs_pb2.CreateJobRequest()
    copy.CopyFrom(request)
    return copy


async def publish_task(js: JetStreamContext, service: str, spec: TaskSpec) -> None:
    """Publishes a task with the current trace context: the worker's span continues it."""
    subject = streams.task_subject(service)
    with tracing.span(
        f"dispatch {service}",
        kind=SpanKind.PRODUCER,
        attributes={
            **tracing.task_attributes(spec),
            "messaging.system": "nats",
            "messaging.destination.name": subject,
        },
    ):
        await js.publish(
            subject,
            spec.to_proto().SerializeToString(),
            headers=tracing.inject({"Nats-Msg-Id": spec.task_id}),
        )
