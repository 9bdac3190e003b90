"""Tasks and results as plain dataclasses, converted to protobuf only on the wire."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.errors import MeshError
from mesh.jobs.v1 import jobs_pb2
from mesh.options import ConversionOptions
from mesh.outcome import Outcome
from mesh.tasks.v1 import tasks_pb2


class TaskKind(enum.Enum):
    CONVERT = tasks_pb2.TASK_KIND_CONVERT
    UNPACK = tasks_pb2.TASK_KIND_UNPACK
    PACK = tasks_pb2.TASK_KIND_PACK
    TOOL = tasks_pb2.TASK_KIND_TOOL


@dataclass(frozen=True)
class PackInput:
    name: str
    blob: str


@dataclass(frozen=True)
class ToolInput:
    """A blob a media tool reads, and the format sniffed from its bytes."""

    blob: str
    format: str

    def to_proto(self) -> tasks_pb2.ToolInput:
        return tasks_pb2.ToolInput(blob=self.blob, format=self.format)

    @classmethod
    def from_proto(cls, message: tasks_pb2.ToolInput) -> ToolInput:
        return cls(message.blob, message.format)


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    job_id: str
    tenant: str
    file_index: int
    source_blob: str
    source_format: str
    source_family: str
    filename: str
    options: ConversionOptions
    output_blob: str
    compress: bool
    kind: TaskKind = TaskKind.CONVERT
    inputs: tuple[PackInput, ...] = ()
    report: str = ""
    entry_index: int | None = None
    job_archive: bool = False
    # TOOL: the media tool, its parameters (API names), every source in order (the first is
    # `source_blob`) and the tool's second file.
    tool: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[ToolInput, ...] = ()
    extra: ToolInput | None = None

    def to_proto(self) -> tasks_pb2.Task:
        return tasks_pb2.Task(
            tool=jobs_pb2.ToolSpec(tool=self.tool, params=dict(self.params)) if self.tool else None,
            sources=[source.to_proto() for source in self.sources],
            extra=self.extra.to_proto() if self.extra is not None else None,
            entry_index=self.entry_index,
            job_archive=self.job_archive,
            kind=self.kind.value,
            inputs=[tasks_pb2.PackInput(name=i.name, blob=i.blob) for i in self.inputs],
            report=self.report,
            task_id=self.task_id,
            job_id=self.job_id,
            tenant=self.tenant,
            file_index=self.file_index,
            source_blob=self.source_blob,
            source_format=self.source_format,
            source_family=self.source_family,
            filename=self.filename,
            options=self.options.to_proto(),
            output_blob=self.output_blob,
            job_type=jobs_pb2.JOB_TYPE_COMPRESS if self.compress else jobs_pb2.JOB_TYPE_CONVERT,
        )

    @classmethod
    def from_proto(cls, message: tasks_pb2.Task) -> TaskSpec:
        return cls(
            task_id=message.task_id,
            job_id=message.job_id,
            tenant=message.tenant,
            file_index=message.file_index,
            source_blob=message.source_blob,
            source_format=message.source_format,
            source_family=message.source_family,
            filename=message.filename,
            options=ConversionOptions.from_proto(message.options),
            output_blob=message.output_blob,
            compress=message.job_type == jobs_pb2.JOB_TYPE_COMPRESS,
            kind=TaskKind(message.kind or tasks_pb2.TASK_KIND_CONVERT),
            inputs=tuple(PackInput(i.name, i.blob) for i in message.inputs),
            report=message.report,
            entry_index=message.entry_index if message.HasField("entry_index") else None,
            job_archive=message.job_archive,
            tool=message.tool.tool,
            params=dict(message.tool.params),
            sources=tuple(ToolInput.from_proto(source) for source in message.sources),
            extra=ToolInput.from_proto(message.extra) if message.HasField("extra") else None,
        )


def started(task: TaskSpec, worker: str) -> tasks_pb2.Result:
    return _result(task, worker, tasks_pb2.RESULT_KIND_STARTED)


def progressed(task: TaskSpec, worker: str, percent: int) -> tasks_pb2.Result:
    result = _result(task, worker, tasks_pb2.RESULT_KIND_PROGRESS)
    result.progress = percent
    return result


def succeeded(task: TaskSpec, worker: str, outcome: Outcome, size: int) -> tasks_pb2.Result:
    result = _result(task, worker, tasks_pb2.RESULT_KIND_SUCCEEDED)
    result.entries.extend(
        tasks_pb2.UnpackedEntry(
            name=entry.name,
            blob=entry.blob or "",
            size=entry.size,
            detected_format=entry.detected_format,
            skipped_reason=entry.skipped_reason or "",
        )
        for entry in outcome.entries or ()
    )
    result.progress = 100
    result.output_blob = task.output_blob
    result.output_size = size
    result.mime_type = outcome.mime_type
    result.output_format = outcome.format
    result.output_name = outcome.output_name
    result.kept_original = outcome.kept_original
    if outcome.width is not None:
        result.width = outcome.width
    if outcome.height is not None:
        result.height = outcome.height
    if outcome.duration is not None:
        result.duration = outcome.duration
    if outcome.applied_quality is not None:
        result.applied_quality = outcome.applied_quality
    return result


def failed(task: TaskSpec, worker: str, error: MeshError) -> tasks_pb2.Result:
    result = _result(task, worker, tasks_pb2.RESULT_KIND_FAILED)
    result.error_code = error.reason.value
    result.error_message = error.message
    return result


def _result(task: TaskSpec, worker: str, kind: tasks_pb2.ResultKind.ValueType) -> tasks_pb2.Result:
    result = tasks_pb2.Result(
        task_id=task.task_id,
        job_id=task.job_id,
        tenant=task.tenant,
        file_index=task.file_index,
        kind=kind,
        worker=worker,
        job_archive=task.job_archive,
    )
    if task.entry_index is not None:
        result.entry_index = task.entry_index
    return result
