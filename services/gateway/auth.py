"""API keys: `Authorization: Bearer <key>` or `x-api-key: <key>` names one tenant."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.requests import Request

from mesh.errors import MeshError, Reason


def presented_key(request: Request) -> str:
    return key_in(request.headers)


def key_in(headers: Headers) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


def tenant_of(presented: str, keys: dict[str, str]) -> str | None:
    """The tenant owning this key, or None."""
    if presented:
        for key, tenant in keys.items():
            if hmac.compare_digest(presented.encode(), key.encode()):
                return tenant
    return None


def tenant_for(request: Request, keys: dict[str, str]) -> str:
    """The tenant owning the request's key, or a 401."""
    tenant = tenant_of(presented_key(request), keys)
    if tenant is not None:
        return tenant
    raise MeshError(Reason.UNAUTHENTICATED, "A valid API key is required (Authorization: Bearer).")
