"""Path and query values that once reached the orchestrator as 5xx now stop at the gateway."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from mesh.errors import MeshError, Reason
from services.gateway import paths


def request_with(**params: str) -> Request:
    return Request({"type": "http", "path_params": params, "headers": []})


@pytest.mark.parametrize("raw", ["12", "0", "2147483647"])
def test_plain_ascii_digits_are_numbers(raw: str) -> None:
    assert paths.whole_number(raw) == int(raw)


@pytest.mark.parametrize("raw", ["", "²", "١١", "-1", "1.0", " 1", "0x10"])
def test_anything_else_is_not_a_number(raw: str) -> None:
    assert paths.whole_number(raw) is None


def test_job_ids_are_uuids_and_case_insensitive() -> None:
    job = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert paths.job_id(request_with(job_id=job.upper())) == job
    for bad in ("µ", "a b", "*", ">", "acme.x", job + "0"):
        with pytest.raises(MeshError) as caught:
            paths.job_id(request_with(job_id=bad))
        assert caught.value.reason is Reason.NOT_FOUND


@pytest.mark.parametrize("raw", ["2147483648", "²", "-1", "99999999999999999999"])
def test_out_of_range_indexes_are_not_found(raw: str) -> None:
    with pytest.raises(MeshError) as caught:
        paths.file_index(request_with(index=raw))
    assert caught.value.reason is Reason.NOT_FOUND
