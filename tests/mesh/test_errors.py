"""The error table is complete and survives a trip through gRPC status details."""

from __future__ import annotations

import grpc
import pytest

from mesh.errors import MeshError, Reason, reason_named


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_an_http_status_and_grpc_code(reason: Reason) -> None:
    assert 400 <= reason.http_status <= 599
    assert isinstance(reason.grpc_code, grpc.StatusCode)
    assert reason.public_message.endswith(".")


def test_statuses_follow_the_contract() -> None:
    expected = {
        Reason.INVALID_FIELD: 400,
        Reason.UNAUTHENTICATED: 401,
        Reason.LINK_EXPIRED: 403,
        Reason.LINK_INVALID: 403,
        Reason.NOT_FOUND: 404,
        Reason.METHOD_NOT_ALLOWED: 405,
        Reason.CONFLICT: 409,
        Reason.TOO_LARGE: 413,
        Reason.UNSUPPORTED_PAIR: 415,
        Reason.CORRUPT_INPUT: 422,
        Reason.RATE_LIMITED: 429,
        Reason.INTERNAL: 500,
        Reason.UNAVAILABLE: 503,
    }
    assert {r: r.http_status for r in expected} == expected


def test_http_body_has_a_string_detail_and_top_level_fields_and_meta() -> None:
    error = MeshError(Reason.INVALID_FIELD, "Bad.", fields={"format": "unknown"}, limit=3)
    assert error.to_http_body() == {
        "error": "Bad.",
        "code": "INVALID_FIELD",
        "detail": "",
        "fields": [{"field": "format", "message": "unknown"}],
        "meta": {"limit": 3},
    }


def test_http_detail_spells_out_several_bad_fields() -> None:
    body = MeshError(
        Reason.INVALID_FIELD, "2 fields are invalid.", fields={"a": "is bad", "b": "is worse"}
    ).to_http_body()
    assert body["detail"] == "a: is bad; b: is worse."
    assert [item["field"] for item in body["fields"]] == ["a", "b"]


def test_http_body_of_a_bare_error_has_every_key() -> None:
    assert MeshError(Reason.NOT_FOUND).to_http_body() == {
        "error": "Not found.",
        "code": "NOT_FOUND",
        "detail": "",
        "fields": [],
        "meta": {},
    }


def test_grpc_status_carries_reason_and_detail() -> None:
    status = MeshError(Reason.UNSUPPORTED_PAIR, "No.", pair="mp3->png").to_grpc_status()
    assert status.code == grpc.StatusCode.UNIMPLEMENTED
    assert status.details == "No."
    keys = [key for key, _ in status.trailing_metadata]
    assert "grpc-status-details-bin" in keys


def test_unknown_reason_names_fall_back_to_internal() -> None:
    assert reason_named("CORRUPT_INPUT") is Reason.CORRUPT_INPUT
    assert reason_named("SOMETHING_NEW") is Reason.INTERNAL
