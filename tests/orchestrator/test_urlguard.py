"""The outbound-URL guard refuses every non-public address class, however it is spelled.

No test here needs a resolver: literal hosts are parsed without a lookup, and where a test is
about resolution, the C library's `getaddrinfo` is replaced by one that answers as a resolver
would (or never answers, as these machines' resolver sometimes does)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mesh.errors import MeshError, Reason
from services.orchestrator import urlguard
from tests.orchestrator.resolver import answering, failing, replace_resolver

NOBODY = urlguard.Allowlist()


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::a00:1", "NAT64"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2001:db8::1", "documentation"),
        ("192.0.2.10", "documentation"),
    ],
)
def test_non_public_addresses_are_refused_with_their_class(address: str, label: str) -> None:
    why = urlguard.refusal(ipaddress.ip_address(address))
    assert why is not None and label in why


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert urlguard.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0x7f000001/",  # hex
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",
        "http://127.1/",
        "http://0/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://169.254.169.254/latest/meta-data/",
        "http://evil.example@127.0.0.1/",
        "http://[fe80::1%25lo]/",
        "http://10.0.0.1:443/",
    ],
)
def test_urls_reaching_internal_hosts_are_refused(url: str, no_resolver: list[str]) -> None:
    for guard in (urlguard.check, urlguard.screen):
        with pytest.raises(MeshError) as caught:
            guard(url, NOBODY, "callbackUrl")
        assert caught.value.reason is Reason.INVALID_FIELD
        assert set(caught.value.detail["fields"]) == {"callbackUrl"}
    assert no_resolver == []


def test_refusal_message_names_the_class_but_not_the_address() -> None:
    with pytest.raises(MeshError) as caught:
        urlguard.check("http://2130706433/", NOBODY, "callbackUrl")
    assert "loopback" in caught.value.message
    assert "127.0.0.1" not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "ftp://8.8.8.8/",
        "javascript:alert(1)",
        "//8.8.8.8/",
        "8.8.8.8",
        "http:///path",
        "http://8.8.8.8:99999/",
        "http://8.8.8.8/a b",
        "http://8.8.8.8\\@127.0.0.1/",
        "http://user:pass@8.8.8.8/",
        "http://8.8.8.8/" + "a" * 3000,
    ],
)
def test_malformed_or_non_http_urls_are_refused(url: str, no_resolver: list[str]) -> None:
    for guard in (urlguard.check, urlguard.screen):
        with pytest.raises(MeshError) as caught:
            guard(url, NOBODY, "sourceUrl")
        assert caught.value.reason is Reason.INVALID_FIELD
        assert "sourceUrl" in caught.value.detail["fields"]
    assert no_resolver == []


@pytest.mark.parametrize("url", ["HTTP://8.8.8.8/x", "HtTpS://8.8.8.8/x", "https://8.8.8.8/x"])
def test_scheme_is_compared_case_insensitively(url: str) -> None:
    target = urlguard.check(url, NOBODY)
    assert target.scheme in {"http", "https"}
    assert target.address == "8.8.8.8"


def test_public_literal_is_pinned_with_host_header_and_request_target() -> None:
    target = urlguard.check("https://[2606:4700:4700::1111]:8443/a/b?x=1&y=2", NOBODY)
    assert target.address == "2606:4700:4700::1111"
    assert target.host_header == "[2606:4700:4700::1111]:8443"
    assert target.target == "/a/b?x=1&y=2"
    assert target.pinned_url == "https://[2606:4700:4700::1111]:8443/a/b?x=1&y=2"


def test_numeric_forms_resolve_to_the_same_pinned_address() -> None:
    assert urlguard.check("http://134744072/", NOBODY).address == "8.8.8.8"
    assert urlguard.check("http://0x08080808/", NOBODY).address == "8.8.8.8"


def test_allowlist_opens_a_host_only_as_written(no_resolver: list[str]) -> None:
    allow = urlguard.Allowlist.parse("127.0.0.1, localhost:9000")
    assert urlguard.check("http://127.0.0.1:1234/", allow).address == "127.0.0.1"
    assert urlguard.check("http://localhost:9000/", allow).host == "localhost"
    for url in ("http://localhost:9001/", "http://2130706433/", "http://[::1]/"):
        with pytest.raises(MeshError):
            urlguard.check(url, allow)


def test_allowlist_entries_are_canonicalised() -> None:
    allow = urlguard.Allowlist.parse("[0:0::1]:8080,LocalHost.")
    assert allow.allows("::1", 8080)
    assert not allow.allows("::1", 8081)
    assert allow.allows("localhost", 1)


def test_allowlist_with_a_bad_port_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="OUTBOUND_ALLOW_HOSTS"):
        urlguard.Allowlist.parse("host:notaport")


@pytest.fixture
def no_resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any name lookup is recorded and fails, as in a network namespace with no resolver."""
    return replace_resolver(monkeypatch, failing(socket.EAI_AGAIN))


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A resolver that never answers (until the test ends)."""
    released = threading.Event()

    def lookup(host: str, port: int) -> list[Any]:
        released.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "gave up")

    yield replace_resolver(monkeypatch, lookup)
    released.set()


def test_screen_accepts_names_without_looking_them_up(no_resolver: list[str]) -> None:
    for url in ("https://0.com/", "https://hooks.example.com:8443/cb?x=1", "http://a.invalid/"):
        urlguard.screen(url, NOBODY, "callbackUrl")
    urlguard.screen("https://8.8.8.8/hook", NOBODY, "callbackUrl")
    assert no_resolver == []


def test_localhost_names_are_loopback_without_a_lookup(no_resolver: list[str]) -> None:
    for url in ("http://localhost:8080/", "http://api.localhost/", "http://LocalHost./x"):
        with pytest.raises(MeshError) as caught:
            urlguard.check(url, NOBODY, "callbackUrl")
        assert caught.value.detail["fields"]["callbackUrl"].endswith("a loopback address")
    allow = urlguard.Allowlist.parse("localhost:9000")
    assert urlguard.check("http://localhost:9000/", allow).address == "127.0.0.1"
    assert no_resolver == []


def test_a_name_the_resolver_denies_is_an_invalid_field(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = replace_resolver(monkeypatch, failing(socket.EAI_NONAME))
    with pytest.raises(MeshError) as caught:
        urlguard.check("http://no-such-host.example/", NOBODY, "callbackUrl")
    assert caught.value.reason is Reason.INVALID_FIELD
    assert caught.value.detail["fields"]["callbackUrl"] == "the host name does not resolve"
    assert asked == ["no-such-host.example"]


def test_a_resolver_that_cannot_answer_now_is_unavailable(no_resolver: list[str]) -> None:
    with pytest.raises(MeshError) as caught:
        urlguard.check("http://hooks.example.com/", NOBODY, "callbackUrl")
    assert caught.value.reason is Reason.UNAVAILABLE


def test_a_name_is_judged_by_what_it_resolves_to(monkeypatch: pytest.MonkeyPatch) -> None:
    replace_resolver(monkeypatch, answering("10.1.2.3"))
    with pytest.raises(MeshError) as caught:
        urlguard.check("http://rebind.example/", NOBODY, "callbackUrl")
    assert caught.value.detail["fields"]["callbackUrl"].endswith("a private address")
    replace_resolver(monkeypatch, answering("8.8.4.4"))
    target = urlguard.check("http://public.example:8080/cb", NOBODY)
    assert (target.address, target.host_header) == ("8.8.4.4", "public.example:8080")


async def test_a_hung_resolver_is_bounded_in_time(hung_resolver: list[str]) -> None:
    started = time.monotonic()
    with pytest.raises(MeshError) as caught:
        await urlguard.check_async("http://slow.example/", NOBODY, "callbackUrl", within=0.5)
    assert caught.value.reason is Reason.UNAVAILABLE
    assert "in time" in caught.value.message
    # Bounded by `within` (plus scheduling), never by the resolver: its own wait is 60 s.
    assert time.monotonic() - started < 30
    assert hung_resolver == ["slow.example"]


async def test_async_check_refuses_like_the_blocking_one() -> None:
    with pytest.raises(MeshError) as caught:
        await urlguard.check_async("http://0x7f.0.0.1/", NOBODY, "callbackUrl")
    assert caught.value.detail["fields"]["callbackUrl"].endswith("a loopback address")
    target = await urlguard.check_async("http://8.8.8.8/", NOBODY)
    assert target.address == "8.8.8.8"


def test_an_exclusive_allowlist_refuses_every_other_host_before_any_lookup(
    no_resolver: list[str],
) -> None:
    only = urlguard.Allowlist.parse("127.0.0.1:9000", only=True)
    assert urlguard.check("http://127.0.0.1:9000/cb", only).address == "127.0.0.1"
    urlguard.screen("http://127.0.0.1:9000/cb", only, "callbackUrl")
    for url in ("https://0.com/", "http://8.8.8.8/", "http://127.0.0.1:9001/"):
        for guard in (urlguard.check, urlguard.screen):
            with pytest.raises(MeshError) as caught:
                guard(url, only, "callbackUrl")
            assert "allowed" in caught.value.detail["fields"]["callbackUrl"]
    assert no_resolver == []
