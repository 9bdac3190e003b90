"""The Convertly signature: HMAC-SHA256 over "<t>.<raw body>", verified in constant time."""

from __future__ import annotations

import hashlib
import hmac

from services.orchestrator import signing

BODY = b'{"id":"evt_1","type":"conversion.completed"}'


def test_header_matches_an_independent_hmac() -> None:
    header = signing.header_value("whsec", 1700000000, BODY)
    expected = hmac.new(b"whsec", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_receiver_accepts_its_own_signature_and_refuses_tampering() -> None:
    header = signing.header_value("whsec", 1700000000, BODY)
    assert signing.verify("whsec", header, BODY, now=1700000010)
    assert not signing.verify("other", header, BODY, now=1700000010)
    assert not signing.verify("whsec", header, BODY + b" ", now=1700000010)
    assert not signing.verify(
        "whsec", header.replace("t=1700000000", "t=1700000001"), BODY, 1700000010
    )


def test_old_signatures_are_refused_as_replays() -> None:
    header = signing.header_value("whsec", 1700000000, BODY)
    assert not signing.verify("whsec", header, BODY, now=1700000000 + 301)


def test_malformed_headers_are_refused() -> None:
    for header in ("", "v1=abc", "t=x,v1=abc", "t=1700000000"):
        assert not signing.verify("whsec", header, BODY, now=1700000000)
