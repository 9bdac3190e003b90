"""Path and query values, checked before they reach the orchestrator: a job id is a UUID, an
index or count is plain ASCII digits within range. Anything else is simply not found (or a
400 for queries), never a 5xx from deeper down."""

from __future__ import annotations

import re

from starlette.requests import Request

from mesh.errors import MeshError, Reason

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_INDEX = 2**31 - 1


def whole_number(raw: str) -> int | None:
    """The value of plain ASCII digits (`str.isdigit` also accepts '²' and other scripts)."""
    if raw and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def job_id(request: Request) -> str:
    raw = str(request.path_params["job_id"]).lower()
    if not _UUID.match(raw):
        raise MeshError(Reason.NOT_FOUND, "No job with this id.")
    return raw


def file_index(request: Request) -> int:
    index = whole_number(str(request.path_params["index"]))
    if index is None or index > MAX_INDEX:
        raise MeshError(Reason.NOT_FOUND, "No file with this index in the job.")
    return index
