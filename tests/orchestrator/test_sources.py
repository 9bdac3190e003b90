"""The limits of one sourceUrl fetch: the upload limit or the request's smaller cap, the fetch
time limit or less when the caller's deadline is nearer (kept back a margin to answer)."""

from __future__ import annotations

from typing import Any

from services.orchestrator import fetch, urlguard
from services.orchestrator.sources import DEADLINE_MARGIN_SECONDS, Sources

LIMITS = fetch.FetchLimits(max_bytes=1000, total_seconds=300)


def sources() -> Sources:
    unused: Any = None
    return Sources(unused, unused, urlguard.Allowlist(), LIMITS)


def test_a_request_may_only_lower_the_byte_limit() -> None:
    assert sources().limits_for(400, None).max_bytes == 400
    assert sources().limits_for(0, None) == LIMITS
    assert sources().limits_for(5000, None).max_bytes == 1000


def test_the_callers_deadline_shortens_the_fetch() -> None:
    assert sources().limits_for(0, 10.0).total_seconds == 10.0 - DEADLINE_MARGIN_SECONDS
    assert sources().limits_for(0, 900.0).total_seconds == 300
    assert sources().limits_for(0, 0.5).total_seconds > 0
