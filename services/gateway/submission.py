"""Creating a job from a conversion form: the one path of POST /api/jobs, /api/convert and
/api/compress.

The form is read and validated (each file streamed into the blob store as it arrives, see
`multipart.read_form`), the CreateJobRequest is built from it, and the job is created. When
the orchestrator refuses the job, the uploaded sources are discarded; when the outcome is
unknown (the orchestrator could not be reached, or failed inside), they are left for the
uploads bucket's expiry, since a job may already reference them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from services.gateway import auth
from services.gateway.client import JobClient
from services.gateway.forms import JobForm
from services.gateway.multipart import FormLimits, ParsedForm, read_form
from services.gateway.settings import Settings
from services.gateway.uploads import discard_uploads

JOB_TYPES = {"convert": jobs_pb2.JOB_TYPE_CONVERT, "compress": jobs_pb2.JOB_TYPE_COMPRESS}
# Whether the job exists is unknown after these: its sources must stay.
_OUTCOME_UNKNOWN = frozenset({Reason.UNAVAILABLE, Reason.INTERNAL})
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Submitted:
    tenant: str
    job: jobs_pb2.Job
    # The Idempotency-Key named a job created before: the answer replays the first one.
    replayed: bool
    form: JobForm

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}


def job_request(tenant: str, idempotency_key: str, form: JobForm) -> jobs_pb2.CreateJobRequest:
    return jobs_pb2.CreateJobRequest(
        tenant=tenant,
        request_id=idempotency_key,
        job_type=JOB_TYPES[form.job_type],
        create_archive=form.create_archive,
        callback_url=form.callback_url,
        callback_secret=form.callback_secret,
        files=[
            jobs_pb2.FileSpec(
                blob_id=uploaded.blob_id, filename=uploaded.filename, options=options.to_proto()
            )
            for uploaded, options in form.files
        ],
    )


async def submit(
    request: Request, parse: Callable[[ParsedForm], JobForm], limits: FormLimits
) -> Submitted:
    settings: Settings = request.app.state.settings
    client: JobClient = request.app.state.client
    tenant = auth.tenant_for(request, settings.api_keys)

    async def upload(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> Any:
        return await client.upload(tenant, filename, content_type, chunks)

    async def discard(blob_id: str) -> None:
        await client.delete_blob(tenant, blob_id)

    form = await read_form(request, parse, upload, discard, limits)
    key = request.headers.get("idempotency-key", "")
    try:
        created = await client.create_job(job_request(tenant, key, form))
    except MeshError as error:
        if error.reason not in _OUTCOME_UNKNOWN:
            await discard_uploads(tuple(uploaded for uploaded, _ in form.files), discard)
        raise
    return Submitted(tenant, created.job, created.replayed, form)
