"""A client for Convertly-compatible conversion servers (convertmesh's gateway among them),
built only on the public REST API: `Client` (sync), `AsyncClient`, and the `convertmesh` CLI."""

from convertmesh.aio import AsyncClient
from convertmesh.client import Client
from convertmesh.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConvertmeshError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerUnreachableError,
    ServiceUnavailableError,
    ToolUnavailableError,
    WaitTimeoutError,
)
from convertmesh.models import Archive, FileResult, Job, JobPage, Saved
from convertmesh.options import Options, parse_size
from convertmesh.results import ToolResult
from convertmesh.retry import RetryNotice, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "Archive",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConvertmeshError",
    "FileResult",
    "InvalidRequestError",
    "Job",
    "JobPage",
    "NotFoundError",
    "Options",
    "RateLimitedError",
    "RetryNotice",
    "RetryPolicy",
    "Saved",
    "ServerUnreachableError",
    "ServiceUnavailableError",
    "ToolResult",
    "ToolUnavailableError",
    "WaitTimeoutError",
    "__version__",
    "parse_size",
]
