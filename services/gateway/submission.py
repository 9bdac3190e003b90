"""Creating a job from a form: the one path of POST /api/jobs, /api/convert, /api/compress,
/api/media/<tool> and /api/transfer.

The form is read and validated (each file streamed into the blob store as it arrives, see
`multipart.read_form`), its CreateJobRequest is built, and the job is created. A file given as
`sourceUrl` is fetched by the orchestrator while it creates the job, so the call may take as
long as the fetch is allowed to. When the orchestrator refuses the job, the uploaded sources are
discarded; when the outcome is unknown (the orchestrator could not be reached, or failed
inside), they are left for the uploads bucket's expiry, since a job may already reference them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from starlette.requests import Request

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from services.gateway import auth
from services.gateway.client import JobClient
from services.gateway.early import Vet
from services.gateway.multipart import FormLimits, ParsedForm, read_form
from services.gateway.settings import Settings
from services.gateway.uploads import Discard, Upload, UploadedFile, discard_uploads

# Whether the job exists is unknown after these: its sources must stay.
_OUTCOME_UNKNOWN = frozenset({Reason.UNAVAILABLE, Reason.INTERNAL})
REPLAYED_HEADER = "Idempotent-Replayed"


class JobSource(Protocol):
    """A validated form that makes one job (forms.JobForm, toolforms.ToolForm, ...)."""

    @property
    def warnings(self) -> tuple[str, ...]: ...

    @property
    def uploads(self) -> tuple[UploadedFile, ...]: ...

    def job_request(self) -> jobs_pb2.CreateJobRequest: ...


F = TypeVar("F", bound=JobSource)


@dataclass(frozen=True)
class Submitted(Generic[F]):
    tenant: str
    job: jobs_pb2.Job
    # The Idempotency-Key named a job created before: the answer replays the first one.
    replayed: bool
    form: F

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}


def fetches(request: jobs_pb2.CreateJobRequest) -> bool:
    """True when the orchestrator will fetch a sourceUrl while creating the job."""
    given = [*request.files, request.extra_file]
    return any(spec.source_url for spec in given)


@dataclass(frozen=True)
class Read(Generic[F]):
    """A validated form whose files are stored, not yet a job."""

    tenant: str
    form: F


async def read(
    request: Request,
    parse: Callable[[ParsedForm], F],
    limits: FormLimits,
    extra_files: frozenset[str] = frozenset(),
    vet: Vet | None = None,
    *,
    store: Callable[[str], tuple[Upload, Discard]] | None = None,
) -> Read[F]:
    """Authenticates, then reads and validates the form (files streamed into the store, or
    into what `store(tenant)` gives, each once `vet` has accepted its first bytes)."""
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    tenant = auth.tenant_for(request, settings.api_keys)

    async def upload(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> Any:
        return await client.upload(tenant, filename, content_type, chunks)

    async def discard(blob_id: str) -> None:
        await client.delete_blob(tenant, blob_id)

    if store is not None:
        upload, discard = store(tenant)  # type: ignore[assignment]
    form = await read_form(
        request, parse, upload, discard, limits, extra_files=extra_files, vet=vet
    )
    return Read(tenant, form)


async def create(
    request: Request, read: Read[F], max_source_bytes: int, fetch_seconds: float | None = None
) -> Submitted[F]:
    """Creates the form's job. A sourceUrl is fetched within `fetch_seconds` (by default the
    gateway's SOURCE_URL_TIMEOUT_SECONDS) and at most `max_source_bytes` (or the smaller cap
    the form sets); refused, the job's uploads are discarded."""
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    tenant, form = read.tenant, read.form
    job = form.job_request()
    job.tenant = tenant
    job.request_id = request.headers.get("idempotency-key", "")
    if not job.max_source_bytes:
        job.max_source_bytes = max_source_bytes
    timeout = None
    if fetches(job):
        timeout = fetch_seconds or settings.source_url_timeout_seconds
    try:
        created = await client.create_job(job, deadline_seconds=timeout)
    except MeshError as error:
        if error.reason not in _OUTCOME_UNKNOWN:

            async def discard(blob_id: str) -> None:
                await client.delete_blob(tenant, blob_id)

            await discard_uploads(form.uploads, discard)
        raise
    return Submitted(tenant, created.job, created.replayed, form)


async def submit(
    request: Request,
    parse: Callable[[ParsedForm], F],
    limits: FormLimits,
    *,
    fetch_seconds: float | None = None,
    vet: Vet | None = None,
) -> Submitted[F]:
    """`read`, then `create`: a sourceUrl brings at most what an upload may."""
    form = await read(request, parse, limits, vet=vet)
    return await create(request, form, limits.max_file_bytes, fetch_seconds)
