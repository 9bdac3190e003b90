"""Typed exceptions, built from the server's error body.

Every failure this package raises is a `ConvertmeshError`. An answer with an error status becomes
the `ApiError` subclass of its status (one table, `ERRORS_BY_STATUS`), carrying what the body
said: `message` (the body's `error`), `code`, `detail`, the per-field problems as `fields` and
the rest as `meta`. Both shapes of the body are read: the current one, where `detail` is a
string and `fields`/`meta` are top-level keys, and the older one, where `detail` was an object
holding `fields` and the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from convertmesh.retry import parse_retry_after


class ConvertmeshError(Exception):
    """Base of every error this package raises."""


class InvalidRequestError(ConvertmeshError, ValueError):
    """The call cannot be sent as given (no input, an unknown tool or parameter...)."""


class ServerUnreachableError(ConvertmeshError):
    """The server could not be reached (refused, unresolvable, timed out, cut off)."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"Cannot reach {base_url}: {reason}.")
        self.base_url = base_url
        self.reason = reason


class WaitTimeoutError(ConvertmeshError):
    """A job did not finish within the time the caller allowed."""

    def __init__(self, job_id: str, seconds: float, status: str) -> None:
        super().__init__(f"Job {job_id} is still {status} after {seconds:g} s.")
        self.job_id = job_id
        self.status = status


class ApiError(ConvertmeshError):
    """The server answered with an error status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        detail: str = "",
        fields: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
        request: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.detail = detail
        self.fields: dict[str, str] = dict(fields or {})
        self.meta: dict[str, Any] = dict(meta or {})
        self.retry_after = retry_after
        self.request = request

    def __str__(self) -> str:
        text = self.message
        if self.detail and self.detail not in text:
            text = f"{text} {self.detail}"
        named = [f"{name}: {problem}" for name, problem in self.fields.items()]
        if named and not all(name in text for name in self.fields):
            text = f"{text} ({'; '.join(named)})"
        return text

    def describe(self) -> str:
        """One line for a person: what was asked, the status and code, what the server said."""
        asked = f"{self.request} answered " if self.request else ""
        code = f" {self.code}" if self.code else ""
        return f"{asked}{self.status}{code}: {self}"


class BadRequestError(ApiError):
    """400: a field is missing or invalid (see `fields`)."""


class AuthenticationError(ApiError):
    """401: no API key, or one the server does not know."""


class PermissionDeniedError(ApiError):
    """403: the key may not do this, or a signed link is tampered with or expired."""


class NotFoundError(ApiError):
    """404: no such job, file or route (for this key)."""


class MethodNotAllowedError(ApiError):
    """405."""


class RequestTimeoutError(ApiError):
    """408: the request's headers or body reached the server too slowly; it closed the
    connection."""


class ConflictError(ApiError):
    """409: the job's state does not allow it, or an Idempotency-Key was reused."""


class TooLargeError(ApiError):
    """413: an upload or an input exceeds a limit."""


class UnsupportedMediaError(ApiError):
    """415: the input's format, or the pair (input, output), is not supported."""


class RangeNotSatisfiableError(ApiError):
    """416."""


class UnprocessableError(ApiError):
    """422: the input is damaged, encrypted, or a target cannot be reached."""


class RateLimitedError(ApiError):
    """429: too many requests or unfinished jobs; `retry_after` says when to try again."""


class ServerError(ApiError):
    """500 and any 5xx without a class of its own."""


class NotImplementedByServerError(ApiError):
    """501: the server does not offer this feature."""


class ServiceUnavailableError(ApiError):
    """503: a dependency of the server is down; `retry_after` says when to try again."""


class ServerTimeoutError(ApiError):
    """504: a synchronous request ran past the server's time budget."""


class ToolUnavailableError(ApiError):
    """The server has no such media tool route (it answered 404 or 501 for it)."""


ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: TooLargeError,
    415: UnsupportedMediaError,
    416: RangeNotSatisfiableError,
    422: UnprocessableError,
    429: RateLimitedError,
    500: ServerError,
    501: NotImplementedByServerError,
    503: ServiceUnavailableError,
    504: ServerTimeoutError,
}


def error_class(status: int) -> type[ApiError]:
    if status in ERRORS_BY_STATUS:
        return ERRORS_BY_STATUS[status]
    return ServerError if status >= 500 else ApiError


def _field_map(raw: object) -> dict[str, str]:
    """Per-field problems from any shape a server sends: `{name: problem}`, a list of
    `{"field"|"name": ..., "message"|"problem": ...}` objects, or a list of bare names."""
    if isinstance(raw, Mapping):
        return {str(name): _text(problem) for name, problem in raw.items()}
    found: dict[str, str] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                name = item.get("field", item.get("name", ""))
                found[str(name)] = _text(item.get("message", item.get("problem", "")))
            else:
                found[str(item)] = ""
    return found


def _text(value: object) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _parts(body: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    raw_detail = body.get("detail")
    meta: dict[str, Any] = dict(body["meta"]) if isinstance(body.get("meta"), Mapping) else {}
    fields = _field_map(body.get("fields"))
    if isinstance(raw_detail, Mapping):  # the older shape: structured data inside `detail`
        fields = fields or _field_map(raw_detail.get("fields"))
        meta = {**{k: v for k, v in raw_detail.items() if k != "fields"}, **meta}
        return "", fields, meta
    return _text(raw_detail), fields, meta


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, request: str = ""
) -> ApiError:
    """The typed error for an error answer, whatever its body (JSON of either shape, text,
    nothing)."""
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    cls = error_class(status)
    if not isinstance(body, Mapping):
        text = content.decode("utf-8", "replace").strip()[:200]
        message = text if text and "<" not in text else f"The server answered HTTP {status}."
        return cls(status, message, retry_after=retry_after, request=request)
    detail, fields, meta = _parts(body)
    message = _text(body.get("error") or body.get("message")) or f"HTTP {status}"
    return cls(
        status,
        message,
        code=_text(body.get("code")),
        detail=detail,
        fields=fields,
        meta=meta,
        retry_after=retry_after,
        request=request,
    )
