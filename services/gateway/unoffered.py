"""Routes of Convertly's API that convertmesh does not offer: each answers 501
NOT_IMPLEMENTED naming the feature (after authentication, like any route), never a fake
success; paths outside them stay 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mesh.errors import MeshError, Reason
from services.gateway import auth
from services.gateway.settings import Settings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True)
class Unoffered:
    # Starlette path: `{rest:path}` matches the rest of the path, the empty rest included.
    path: str
    feature: str
    instead: str


UNOFFERED = (
    Unoffered(
        "/api/files{rest:path}",
        "A stored file library (/api/files)",
        "outputs are kept with their job: GET /api/jobs/{id} lists them",
    ),
    Unoffered(
        "/api/uploads{rest:path}",
        "Separate and resumable uploads (/api/uploads)",
        "send files with the job itself, or give a sourceUrl",
    ),
    Unoffered(
        "/api/folders{rest:path}",
        "Folders (/api/folders)",
        "jobs are listed with GET /api/jobs",
    ),
    Unoffered(
        "/api/workflows{rest:path}",
        "Workflows (/api/workflows)",
        "chain jobs from your side, or use the media tools at /api/media/<tool>",
    ),
    Unoffered(
        "/api/ai/{rest:path}",
        "AI tools (/api/ai)",
        "the media tools are at /api/media/<tool>",
    ),
    Unoffered(
        "/api/video/{rest:path}",
        "The video API (/api/video)",
        "video tools are at /api/media/<tool> (convert, trim, gif, watermark, ...)",
    ),
    Unoffered(
        "/api/cdn{rest:path}",
        "CDN delivery (/api/cdn)",
        "outputs download from the signed downloadUrl of their job",
    ),
)


def _endpoint(unoffered: Unoffered) -> Any:
    async def endpoint(request: Request) -> Response:
        settings: Settings = request.app.state.settings
        auth.tenant_for(request, settings.api_keys)
        raise MeshError(
            Reason.NOT_IMPLEMENTED,
            f"{unoffered.feature} is not offered by convertmesh; {unoffered.instead}.",
            feature=unoffered.feature,
        )

    return endpoint


routes = [Route(u.path, _endpoint(u), methods=METHODS) for u in UNOFFERED]
