"""The one error model: a reason, mapped once to a gRPC code and an HTTP status.

Every failure a user can see is a `MeshError` carrying a `Reason`. gRPC servers abort with the
reason inside a `google.rpc.ErrorInfo` detail; clients turn it back into the same `MeshError`;
the gateway renders it as Convertly's `{"error", "code", "detail", "fields", "meta"}` body
(`to_http_body`): `detail` is always a string, since Convertly's PHP client casts it to one.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "convertmesh"


@dataclass(frozen=True)
class _Mapping:
    http: int
    grpc: grpc.StatusCode
    retryable: bool
    public_message: str


class Reason(enum.Enum):
    """Why something failed. The value is the stable `code` clients see."""

    INVALID_FIELD = "INVALID_FIELD"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    LINK_EXPIRED = "LINK_EXPIRED"
    LINK_INVALID = "LINK_INVALID"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CONFLICT = "CONFLICT"
    IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_MISMATCH"
    TOO_LARGE = "TOO_LARGE"
    RANGE_NOT_SATISFIABLE = "RANGE_NOT_SATISFIABLE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    UNSUPPORTED_PAIR = "UNSUPPORTED_PAIR"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    CORRUPT_INPUT = "CORRUPT_INPUT"
    PASSWORD_REQUIRED = "PASSWORD_REQUIRED"
    TARGET_UNREACHABLE = "TARGET_UNREACHABLE"
    NO_AUDIO_TRACK = "NO_AUDIO_TRACK"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    CANCELLED = "CANCELLED"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INTERNAL = "INTERNAL"

    @property
    def http_status(self) -> int:
        return _TABLE[self].http

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _TABLE[self].grpc

    @property
    def retryable(self) -> bool:
        """True when the same input may succeed later (a dependency was down, not the input)."""
        return _TABLE[self].retryable

    @property
    def public_message(self) -> str:
        return _TABLE[self].public_message


_C = grpc.StatusCode
_TABLE: dict[Reason, _Mapping] = {
    Reason.INVALID_FIELD: _Mapping(400, _C.INVALID_ARGUMENT, False, "A field is invalid."),
    Reason.UNAUTHENTICATED: _Mapping(
        401, _C.UNAUTHENTICATED, False, "A valid API key is required."
    ),
    Reason.FORBIDDEN: _Mapping(403, _C.PERMISSION_DENIED, False, "This key may not do that."),
    Reason.LINK_EXPIRED: _Mapping(
        403, _C.PERMISSION_DENIED, False, "This download link has expired; fetch the job again."
    ),
    Reason.LINK_INVALID: _Mapping(
        403, _C.PERMISSION_DENIED, False, "This download link's signature does not match."
    ),
    Reason.NOT_FOUND: _Mapping(404, _C.NOT_FOUND, False, "Not found."),
    Reason.METHOD_NOT_ALLOWED: _Mapping(
        405, _C.UNIMPLEMENTED, False, "This route does not take that method."
    ),
    Reason.CONFLICT: _Mapping(
        409, _C.FAILED_PRECONDITION, False, "The job is not in a state that allows this."
    ),
    Reason.IDEMPOTENCY_MISMATCH: _Mapping(
        409, _C.ALREADY_EXISTS, False, "This Idempotency-Key was used with a different request."
    ),
    Reason.TOO_LARGE: _Mapping(413, _C.OUT_OF_RANGE, False, "The upload is too large."),
    Reason.RANGE_NOT_SATISFIABLE: _Mapping(
        416, _C.OUT_OF_RANGE, False, "The requested range is outside the file."
    ),
    Reason.LIMIT_EXCEEDED: _Mapping(
        413, _C.OUT_OF_RANGE, False, "The input exceeds a processing limit."
    ),
    Reason.UNSUPPORTED_PAIR: _Mapping(
        415, _C.UNIMPLEMENTED, False, "This input cannot be converted to that format."
    ),
    Reason.UNSUPPORTED_FORMAT: _Mapping(
        415, _C.INVALID_ARGUMENT, False, "The input's format is not supported."
    ),
    Reason.CORRUPT_INPUT: _Mapping(
        422, _C.INVALID_ARGUMENT, False, "The input is damaged or cannot be decoded."
    ),
    Reason.PASSWORD_REQUIRED: _Mapping(
        422, _C.INVALID_ARGUMENT, False, "The input is encrypted; a password is required."
    ),
    Reason.TARGET_UNREACHABLE: _Mapping(
        422, _C.INVALID_ARGUMENT, False, "The target size cannot be reached."
    ),
    Reason.NO_AUDIO_TRACK: _Mapping(
        422, _C.INVALID_ARGUMENT, False, "The input has no audio track."
    ),
    Reason.RATE_LIMITED: _Mapping(
        429, _C.RESOURCE_EXHAUSTED, True, "Too many requests; retry later."
    ),
    Reason.TIMEOUT: _Mapping(
        504, _C.DEADLINE_EXCEEDED, False, "The conversion took longer than allowed."
    ),
    Reason.RESOURCE_EXHAUSTED: _Mapping(
        413, _C.RESOURCE_EXHAUSTED, False, "The conversion needed more memory than allowed."
    ),
    Reason.CANCELLED: _Mapping(409, _C.CANCELLED, False, "The job was cancelled."),
    Reason.UNAVAILABLE: _Mapping(
        503, _C.UNAVAILABLE, True, "The service is temporarily unavailable; retry later."
    ),
    Reason.NOT_IMPLEMENTED: _Mapping(
        501, _C.UNIMPLEMENTED, False, "convertmesh does not offer this feature."
    ),
    Reason.INTERNAL: _Mapping(500, _C.INTERNAL, True, "Something went wrong on our side."),
}


class MeshError(Exception):
    """A failure with a reason from the table, a message a user can act on, and details.

    `message` must never contain internal addresses, paths or stack traces: it is shown.
    """

    def __init__(self, reason: Reason, message: str = "", **detail: Any) -> None:
        super().__init__(message or reason.public_message)
        self.reason = reason
        self.message = message or reason.public_message
        self.detail: dict[str, Any] = detail

    def __repr__(self) -> str:
        return f"MeshError({self.reason.value}, {self.message!r})"

    def to_http_body(self) -> dict[str, Any]:
        """`detail` is a sentence (empty when the message says it all), `fields` lists every
        bad field as `{"field", "message"}`, `meta` holds the rest of the structured detail."""
        meta = {key: value for key, value in self.detail.items() if key != "fields"}
        fields = field_errors(self.detail.get("fields"))
        detail = ""
        if len(fields) > 1:
            detail = "; ".join(f"{item['field']}: {item['message']}" for item in fields) + "."
        return {
            "error": self.message,
            "code": self.reason.value,
            "detail": detail,
            "fields": fields,
            "meta": meta,
        }

    def to_grpc_status(self) -> grpc.Status:
        """A rich status: the reason travels in an ErrorInfo, the detail as JSON metadata."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason.value,
            domain=DOMAIN,
            metadata={"detail": json.dumps(self.detail, default=str)},
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        status = status_pb2.Status(
            code=self.reason.grpc_code.value[0], message=self.message, details=[packed]
        )
        return rpc_status.to_status(status)


def field_errors(raw: object) -> list[dict[str, str]]:
    """`fields` as the HTTP body lists them, from a `{name: problem}` map (or bare names)."""
    if isinstance(raw, dict):
        return [{"field": str(name), "message": str(problem)} for name, problem in raw.items()]
    if isinstance(raw, list | tuple):
        return [{"field": str(name), "message": ""} for name in raw]
    return []


def from_grpc_error(error: grpc.RpcError) -> MeshError:
    """Turns a failed call back into the MeshError the server raised, or UNAVAILABLE/INTERNAL."""
    status = rpc_status.from_call(error)
    if status is not None:
        for packed in status.details:
            info = error_details_pb2.ErrorInfo()
            if packed.Is(info.DESCRIPTOR) and packed.Unpack(info) and info.domain == DOMAIN:
                try:
                    reason = Reason(info.reason)
                except ValueError:
                    break
                detail = json.loads(info.metadata.get("detail", "{}"))
                return MeshError(reason, status.message, **detail)
    code = error.code() if hasattr(error, "code") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return MeshError(Reason.UNAVAILABLE)
    if code == grpc.StatusCode.NOT_FOUND:
        return MeshError(Reason.NOT_FOUND)
    return MeshError(Reason.INTERNAL)


def reason_named(name: str) -> Reason:
    """The reason with this code, or INTERNAL for a name this build does not know."""
    try:
        return Reason(name)
    except ValueError:
        return Reason.INTERNAL
