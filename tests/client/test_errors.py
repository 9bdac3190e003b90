"""Typed errors from the error body, in the shape the gateway renders now and in the older and
newer shapes other servers send; a server without the media tools is told apart clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convertmesh import Client
from convertmesh.errors import (
    ERRORS_BY_STATUS,
    ApiError,
    AuthenticationError,
    BadRequestError,
    RateLimitedError,
    ServerError,
    TooLargeError,
    ToolUnavailableError,
    error_from_response,
)
from mesh.errors import MeshError, Reason
from tests.client.loopback import Answer, Loopback

ROOT = Path(__file__).resolve().parents[2]


def test_every_status_of_the_servers_error_table_has_its_own_class() -> None:
    statuses = {reason.http_status for reason in Reason}
    assert statuses <= set(ERRORS_BY_STATUS), statuses - set(ERRORS_BY_STATUS)
    assert len(set(ERRORS_BY_STATUS.values())) == len(ERRORS_BY_STATUS)


def test_the_body_the_gateway_renders_now() -> None:
    error = MeshError(Reason.INVALID_FIELD, "The field 'format' is bad.", fields={"format": "bad"})
    raised = error_from_response(400, {}, json.dumps(error.to_http_body()).encode(), "POST /x")
    assert isinstance(raised, BadRequestError)
    assert (raised.code, raised.message) == ("INVALID_FIELD", "The field 'format' is bad.")
    assert raised.fields == {"format": "bad"}
    assert isinstance(raised.detail, str)


def test_older_body_with_structured_detail() -> None:
    body = {
        "error": "The upload is too large.",
        "code": "TOO_LARGE",
        "detail": {"limit": "maxFileBytes", "max": 100, "fields": {"files": "too big"}},
    }
    raised = error_from_response(413, {}, json.dumps(body).encode())
    assert isinstance(raised, TooLargeError)
    assert raised.detail == ""
    assert raised.fields == {"files": "too big"}
    assert raised.meta == {"limit": "maxFileBytes", "max": 100}


def test_newer_body_with_string_detail_fields_and_meta() -> None:
    body = {
        "error": "Too many unfinished jobs.",
        "code": "RATE_LIMITED",
        "detail": "Wait for some to finish.",
        "fields": [],
        "meta": {"limit": 50},
    }
    raised = error_from_response(429, {"retry-after": "5"}, json.dumps(body).encode())
    assert isinstance(raised, RateLimitedError)
    assert raised.retry_after == 5.0
    assert raised.meta == {"limit": 50}
    assert str(raised) == "Too many unfinished jobs. Wait for some to finish."


def test_a_proxy_page_or_empty_body_still_gives_a_typed_error() -> None:
    raised = error_from_response(502, {}, b"<html><body>Bad gateway</body></html>")
    assert isinstance(raised, ServerError)
    assert raised.message == "The server answered HTTP 502."
    assert isinstance(error_from_response(401, {}, b""), AuthenticationError)
    assert type(error_from_response(418, {}, b"")) is ApiError


@pytest.mark.parametrize("status", [404, 501])
def test_a_server_without_the_tool_says_so(status: int, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 1000)
    answer = Answer.json(status, {"error": "Not Found"})
    with (
        Loopback([answer]) as server,
        Client(server.url, "k") as client,
        pytest.raises(ToolUnavailableError) as raised,
    ):
        client.gif(clip, start=3, duration=4)
    assert "does not offer the media tool 'gif'" in str(raised.value)
    assert server.seen[0].path == "/api/media/gif"
    assert b'name="start"\r\n\r\n3' in server.seen[0].body_head


def test_the_cli_explains_a_missing_tool_and_exits_1(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 1000)
    with Loopback([Answer.json(404, {"error": "Not Found"})]) as server:
        done = subprocess.run(
            [sys.executable, "-m", "convertmesh", "tools", "gif", str(clip), "--start", "3"],
            env={**os.environ, "CONVERTMESH_URL": server.url, "CONVERTMESH_API_KEY": "k"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "does not offer the media tool 'gif'" in done.stderr
    assert "Traceback" not in done.stderr
