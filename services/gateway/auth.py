"""API keys: `Authorization: Bearer <key>` or `x-api-key: <key>` names one tenant."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from mesh.errors import MeshError, Reason


def presented_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key", "").strip()


def tenant_for(request: Request, keys: dict[str, str]) -> str:
    """The tenant owning the request's key, or a 401."""
    presented = presented_key(request)
    if presented:
        for key, tenant in keys.items():
            if hmac.compare_digest(presented.encode(), key.encode()):
                return tenant
    raise MeshError(Reason.UNAUTHENTICATED, "A valid API key is required (Authorization: Bearer).")
