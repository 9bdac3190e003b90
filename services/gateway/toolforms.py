"""The media tools' forms (`POST /api/media/<tool>`), validated whole like the jobs form: every
bad field, the tool's parameters included, in one 400.

A tool takes one `file` (image-to-pdf: repeated `files`) or a `sourceUrl`, its parameters
(`mesh.tools.params`, every default of API.md), `async=true` (alias `background=true`) to run
as a job, and for watermark a second file part, `watermarkFile`. Run synchronously, the uploads
must fit the sync budget: past it the answer is 413, pointing at `async=true`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mesh.errors import MeshError, Reason
from mesh.fields import FieldErrors, specs, to_fields
from mesh.jobs.v1 import jobs_pb2
from mesh.tools.catalog import Tool, params_for
from mesh.tools.params import WatermarkParams
from services.gateway.forms import (
    SOURCE_URL,
    Source,
    field_names,
    file_spec,
    read_flag,
    read_sources,
    refuse_cloud_source,
)
from services.gateway.multipart import FILE_FIELD, ParsedForm
from services.gateway.uploads import UploadedFile

ASYNC, BACKGROUND = "async", "background"
MiB = 1024 * 1024


@dataclass(frozen=True)
class ToolForm:
    tool: Tool
    # The tool's parameters as API-named strings, defaults filled in.
    params: dict[str, str]
    sources: tuple[Source, ...]
    extra: UploadedFile | None
    background: bool
    # The most a sourceUrl may bring: the sync budget unless the tool runs as a job.
    max_source_bytes: int
    warnings: tuple[str, ...] = ()

    @property
    def uploads(self) -> tuple[UploadedFile, ...]:
        given = [s for s in self.sources if isinstance(s, UploadedFile)]
        return (*given, *([self.extra] if self.extra is not None else []))

    def job_request(self) -> jobs_pb2.CreateJobRequest:
        request = jobs_pb2.CreateJobRequest(
            job_type=jobs_pb2.JOB_TYPE_TOOL,
            tool=jobs_pb2.ToolSpec(tool=self.tool.name, params=self.params),
            files=[file_spec(source) for source in self.sources],
            max_source_bytes=self.max_source_bytes,
        )
        if self.extra is not None:
            request.extra_file.CopyFrom(file_spec(self.extra))
        return request


def known_fields(tool: Tool) -> frozenset[str]:
    """Every text field the tool's route reads."""
    return frozenset(
        {spec.name for _, spec in specs(tool.params)} | {SOURCE_URL, ASYNC, BACKGROUND}
    )


def too_large_for_sync(budget: int) -> MeshError:
    return MeshError(
        Reason.TOO_LARGE,
        f"Synchronous tool runs take at most {budget // MiB} MB; add async=true to run the "
        "tool as a job for larger files.",
        limit="syncMaxBytes",
        max=budget,
    )


def parser(tool: Tool, sync_budget: int) -> Callable[[ParsedForm], ToolForm]:
    """The form parser of `tool`'s route; `sync_budget` bounds what a synchronous run takes."""

    def parse(form: ParsedForm) -> ToolForm:
        refuse_cloud_source(form)
        errors = FieldErrors()
        route = f"POST /api/media/{tool.name}"
        warnings = field_names(form, known_fields(tool), route, errors)
        background = read_flag(form, ASYNC, False, errors) | read_flag(
            form, BACKGROUND, False, errors
        )
        files = tuple(f for f in form.files if FILE_FIELD.fullmatch(f.field))
        extras = [f for f in form.files if f.field == tool.extra_file]
        noun = "one or more files" if tool.max_files > 1 else "one file"
        sources = read_sources(form, files, errors, noun)
        if len(sources) > tool.max_files:
            errors.add("files", f"may carry at most {tool.max_files} file(s) for {tool.name}")
        if len(extras) > 1:
            errors.add(str(tool.extra_file), "must be one file")
        extra = extras[0] if extras else None
        if extra is not None and extra.size == 0:
            errors.add(str(tool.extra_file), "is an empty file (0 bytes)")
        params = _params(tool, form, extra is not None, errors)
        errors.raise_if_any()
        if not background and sum(f.size for f in form.files) > sync_budget:
            raise too_large_for_sync(sync_budget)
        return ToolForm(
            tool,
            params,
            sources,
            extra,
            background,
            max_source_bytes=0 if background else sync_budget,
            warnings=warnings,
        )

    return parse


def _params(tool: Tool, form: ParsedForm, has_extra: bool, errors: FieldErrors) -> dict[str, str]:
    values = {name: form.given(name) for name in form.fields}
    try:
        params = params_for(tool, {k: v for k, v in values.items() if v is not None})
        if isinstance(params, WatermarkParams):
            params.require_one(has_extra)
    except MeshError as error:
        errors.merge(error)
        return {}
    return to_fields(params)
