"""Signed download links: they verify for their tenant and path until they expire, survive a
key rotation, and any change to path, expiry or signature makes them invalid."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from mesh.errors import MeshError, Reason
from mesh.links import DownloadLinks, LinkSigner
from mesh.settings import SettingsError, load

KEY = "current-key-0123456789abcdef"
OLD = "previous-key-0123456789abcdef"
PATH = "/api/jobs/5a0c6f0e-8d1b-4c36-9e0f-2f1d7b9c1a11/files/0"
NOW = 1_700_000_000.0
TENANTS = ("acme", "globex")


def _query(signed: str) -> tuple[str, str, str]:
    parts = urlsplit(signed)
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    return parts.path, query["expires"][0], query["signature"][0]


def _refusal(signer: LinkSigner, path: str, expires: str, signature: str, now: float) -> Reason:
    with pytest.raises(MeshError) as caught:
        signer.verify(TENANTS, path, expires, signature, now)
    assert "fetch the job again" in caught.value.message.lower()
    return caught.value.reason


def test_a_signed_path_verifies_for_its_tenant_until_it_expires() -> None:
    signer = LinkSigner((KEY,), lifetime_seconds=3600)
    path, expires, signature = _query(signer.sign("globex", PATH, NOW))
    assert path == PATH
    assert NOW + 3600 <= int(expires) <= NOW + 3600 + 300
    assert signer.verify(TENANTS, path, expires, signature, NOW + 3599) == "globex"
    assert signer.verify(TENANTS, path, expires, signature, float(expires)) == "globex"
    reason = _refusal(signer, path, expires, signature, float(expires) + 1)
    assert reason is Reason.LINK_EXPIRED


def test_links_signed_in_the_same_minutes_are_the_same_link() -> None:
    signer = LinkSigner((KEY,), lifetime_seconds=3600)
    first = signer.sign("acme", PATH, NOW - NOW % 300 + 1)
    assert signer.sign("acme", PATH, NOW - NOW % 300 + 250) == first


@pytest.mark.parametrize("part", ["path", "expires", "signature"])
def test_any_altered_part_is_an_invalid_link(part: str) -> None:
    signer = LinkSigner((KEY,))
    path, expires, signature = _query(signer.sign("acme", PATH, NOW))
    if part == "path":
        path = path.replace("files/0", "files/1")
    elif part == "expires":
        expires = str(int(expires) + 3600)
    else:
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert _refusal(signer, path, expires, signature, NOW) is Reason.LINK_INVALID


def test_a_link_of_a_tenant_the_gateway_does_not_know_is_invalid() -> None:
    signer = LinkSigner((KEY,))
    path, expires, signature = _query(signer.sign("initech", PATH, NOW))
    assert _refusal(signer, path, expires, signature, NOW) is Reason.LINK_INVALID


def test_rotation_accepts_links_of_the_previous_key_and_signs_with_the_new() -> None:
    before = LinkSigner((OLD,))
    after = LinkSigner((KEY, OLD))
    path, expires, signature = _query(before.sign("acme", PATH, NOW))
    assert after.verify(TENANTS, path, expires, signature, NOW) == "acme"
    fresh = _query(after.sign("acme", PATH, NOW))
    assert _refusal(before, *fresh, now=NOW) is Reason.LINK_INVALID
    assert _refusal(LinkSigner((KEY,)), path, expires, signature, NOW) is Reason.LINK_INVALID


@pytest.mark.parametrize("expires", ["", "soon", "-5", "1e9", "²"])
def test_an_expiry_that_is_not_a_unix_time_is_invalid(expires: str) -> None:
    signer = LinkSigner((KEY,))
    assert _refusal(signer, PATH, expires, "00" * 32, NOW) is Reason.LINK_INVALID


def test_settings_name_the_variable_when_keys_are_missing_or_short() -> None:
    with pytest.raises(SettingsError, match="LINK_SIGNING_KEYS"):
        load(LinkSigner.read, {})
    with pytest.raises(SettingsError, match="LINK_SIGNING_KEYS"):
        load(LinkSigner.read, {"LINK_SIGNING_KEYS": "short"})
    with pytest.raises(SettingsError, match="LINK_LIFETIME_SECONDS"):
        load(LinkSigner.read, {"LINK_SIGNING_KEYS": KEY, "LINK_LIFETIME_SECONDS": "an hour"})
    signer = load(LinkSigner.read, {"LINK_SIGNING_KEYS": f" {KEY} , {OLD} "})
    assert signer == LinkSigner((KEY, OLD))


def test_download_links_join_the_base_url_once() -> None:
    links = DownloadLinks("http://127.0.0.1:8080/", LinkSigner((KEY,)))
    url = links.url("acme", PATH)
    assert url.startswith(f"http://127.0.0.1:8080{PATH}?expires=")
