"""What both clients share about the wire: timeouts, how a failed connection is described to
a person, and which failures mean the server never saw the request."""

from __future__ import annotations

import httpx

from convertmesh.errors import ApiError, ToolUnavailableError

ERROR_BODY_LIMIT = 64 * 1024
CONNECT_SECONDS = 10.0


def timeout_for(read_seconds: float) -> httpx.Timeout:
    """Connecting gets a short limit; reading and writing get `read_seconds` between bytes
    (not for the whole transfer, so a large upload or download is never cut short)."""
    return httpx.Timeout(read_seconds, connect=min(CONNECT_SECONDS, read_seconds))


def never_sent(error: httpx.TransportError) -> bool:
    """True when the connection was never opened: repeating the request cannot duplicate it."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


def describe_transport_error(error: httpx.TransportError) -> str:
    text = str(error).strip()
    if isinstance(error, httpx.ConnectTimeout):
        return "the connection timed out"
    if isinstance(error, httpx.ConnectError):
        lowered = text.lower()
        if "refused" in lowered:
            return "connection refused (is the server running?)"
        if "name or service" in lowered or "resolution" in lowered or "getaddrinfo" in lowered:
            return "the host name could not be resolved"
        return f"could not connect ({text or type(error).__name__})"
    if isinstance(error, httpx.TimeoutException):
        return "the server stopped answering (timed out)"
    return f"the connection broke ({text or type(error).__name__})"


def tool_unavailable(name: str, error: ApiError) -> ToolUnavailableError:
    return ToolUnavailableError(
        error.status,
        f"This server does not offer the media tool {name!r} "
        f"(POST /api/media/{name} answered {error.status}).",
        code=error.code,
        detail=error.detail,
        meta=error.meta,
        request=error.request,
    )
