"""The one outbound-URL guard: may the mesh connect to this URL, and at which address?

A URL is parsed, its host resolved once, and refused if any address it resolves to is not a
public unicast address (loopback, private, link-local, CGNAT, cloud metadata, multicast, ...),
including IPv4 addresses smuggled inside IPv6 (IPv4-mapped, 6to4, NAT64). The caller then
connects to the pinned address (`outbound`), so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot redirect it. Odd numeric hosts (`2130706433`, `0x7f.1`,
`0177.0.0.1`) are parsed as the C library parses them, without any lookup, and judged by the
address they spell. `localhost` and `*.localhost` are loopback by definition (RFC 6761) and are
never looked up either.

Two moments use the guard. When a URL is *accepted* (a job's callbackUrl), `screen` checks its
syntax, scheme, port and any literal address, and never touches the network: a job must not
depend on a resolver being up, and a name that resolves now may point elsewhere later anyway.
When a connection is *made*, `check` / `check_async` resolve, judge every address and pin one;
that happens before every attempt.

An operator allowlist (`OUTBOUND_ALLOW_HOSTS`) opens chosen hosts exactly as written in the URL,
whatever they resolve to; tests use it to reach a receiver on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mesh.errors import MeshError, Reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order, so the most specific label wins (metadata before link-local).
_REFUSED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("169.254.169.254/32"), "a cloud metadata address"),
    (_V4("100.100.100.200/32"), "a cloud metadata address"),
    (_V6("fd00:ec2::254/128"), "a cloud metadata address"),
    (_V4("0.0.0.0/8"), "an unspecified address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.0.0/24"), "a reserved address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved or broadcast address"),
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("::/96"), "a deprecated IPv4-compatible address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("2001::/32"), "a Teredo address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("100::/64"), "a discard address"),
    (_V6("fc00::/7"), "a private address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
)
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")


@dataclass(frozen=True)
class Allowlist:
    """Hosts the operator opened on purpose: `host` (any port) or `host:port`. When `only`
    (`OUTBOUND_ALLOW_ONLY`), they are the only hosts the mesh may reach at all: a locked-down
    deployment, or a test suite that must never leave the machine."""

    entries: frozenset[tuple[str, int | None]] = frozenset()
    only: bool = False

    @classmethod
    def parse(cls, raw: str, only: bool = False) -> Allowlist:
        entries: set[tuple[str, int | None]] = set()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            parts = urlsplit(f"//{item}")
            try:
                port = parts.port
            except ValueError as exc:
                raise ValueError(f"OUTBOUND_ALLOW_HOSTS has a bad port in {item!r}") from exc
            if not parts.hostname:
                raise ValueError(f"OUTBOUND_ALLOW_HOSTS has an empty host in {item!r}")
            entries.add((_canonical_host(parts.hostname), port))
        return cls(frozenset(entries), only)

    def allows(self, host: str, port: int) -> bool:
        return (host, None) in self.entries or (host, port) in self.entries


@dataclass(frozen=True)
class Target:
    """A checked URL and the one address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    # Path and query as sent on the request line.
    target: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def pinned_url(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{address}:{self.port}{self.target}"


def refusal(address: IPAddress) -> str | None:
    """Why connecting to this address is refused, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            return None if inner is None else f"{inner} inside an IPv6 address"
    for network, label in _REFUSED:
        if address.version == network.version and address in network:
            return label
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # An IPv4 address reached through IPv6 is judged as that IPv4 address: refusing the public
    # ones would break IPv6-only (DNS64) networks, allowing the rest would open loopback.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def screen(url: str, allow: Allowlist, field: str = "url") -> None:
    """Checks what can be known of a URL without the network: syntax, scheme, port, and the
    address when the host is a literal (or a localhost name). Raises INVALID_FIELD naming
    `field`; a host name is left for `check` to resolve when the connection is made."""
    parsed = _parse(url, allow, field)
    addresses = _literal_addresses(parsed.host, parsed.port)
    if addresses:
        _judge(parsed, addresses, allow, field)


def check(url: str, allow: Allowlist, field: str = "url") -> Target:
    """Checks a URL and resolves its host (blocking); raises INVALID_FIELD naming `field`."""
    parsed = _parse(url, allow, field)
    return _judge(parsed, _resolve(parsed.host, parsed.port, field), allow, field)


async def check_async(
    url: str, allow: Allowlist, field: str = "url", within: float = RESOLVE_TIMEOUT_SECONDS
) -> Target:
    """`check` with the resolution in a thread, bounded by `within` seconds."""
    parsed = _parse(url, allow, field)
    addresses = _literal_addresses(parsed.host, parsed.port)
    if not addresses:
        try:
            async with asyncio.timeout(within):
                addresses = await asyncio.to_thread(_resolve, parsed.host, parsed.port, field)
        except TimeoutError:
            raise MeshError(
                Reason.UNAVAILABLE, f"{field}: the host name did not resolve in time; retry."
            ) from None
    return _judge(parsed, addresses, allow, field)


def _invalid(field: str, reason: str) -> MeshError:
    return MeshError(Reason.INVALID_FIELD, f"{field}: {reason}.", fields={field: reason})


class UnresolvedHostError(MeshError):
    """The resolver answered that the name does not exist (or has no address). An invalid field
    for a fetch made now, but not a verdict on the URL: the name may exist at a later attempt,
    so callback delivery retries it on the schedule instead of failing for good."""

    def __init__(self, field: str) -> None:
        reason = "the host name does not resolve"
        super().__init__(Reason.INVALID_FIELD, f"{field}: {reason}.", fields={field: reason})


@dataclass(frozen=True)
class _Parsed:
    url: str
    scheme: str
    host: str
    port: int
    target: str


def _parse(url: str, allow: Allowlist, field: str) -> _Parsed:
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(field, f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in url):
        raise _invalid(field, "must not contain spaces, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _invalid(field, "must be an http or https URL")
    if "@" in parts.netloc:
        # Credentials in the URL invite parser confusion about which host is meant.
        raise _invalid(field, "must not contain a user name or password")
    if not parts.hostname:
        raise _invalid(field, "must name a host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise _invalid(field, "has an invalid port") from None
    try:
        host = _canonical_host(parts.hostname)
    except UnicodeError:
        raise _invalid(field, "has an invalid host name") from None
    if allow.only and not allow.allows(host, port):
        raise _invalid(field, "this deployment connects only to the hosts its operator allowed")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return _Parsed(url, scheme, host, port, target)


def _canonical_host(hostname: str) -> str:
    """Lower-case, IDNA-encoded names; IP literals in their compressed form."""
    host = hostname.rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.encode("idna").decode("ascii")


_LOOPBACK_NAMES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _literal_addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses a host spells without any lookup: an IP literal in any form the C library
    accepts (AI_NUMERICHOST never queries a resolver), or a localhost name; else []."""
    if host == "localhost" or host.endswith(".localhost"):
        return list(_LOOPBACK_NAMES)
    with contextlib.suppress(ValueError):
        # An IPv6 literal may carry a zone (`fe80::1%eth0`): the address is what is judged.
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return []
    return _addresses(infos)


def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    literal = _literal_addresses(host, port)
    if literal:
        return literal
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise MeshError(
                Reason.UNAVAILABLE, f"{field}: the host name could not be resolved now; retry."
            ) from None
        raise UnresolvedHostError(field) from None
    except UnicodeError:
        raise _invalid(field, "has an invalid host name") from None
    addresses = _addresses(infos)
    if not addresses:
        raise UnresolvedHostError(field)
    return addresses


def _addresses(infos: Sequence[tuple[Any, ...]]) -> list[IPAddress]:
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _judge(parsed: _Parsed, addresses: list[IPAddress], allow: Allowlist, field: str) -> Target:
    if not allow.allows(parsed.host, parsed.port):
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise _invalid(field, f"the host resolves to {why}")
    pinned = str(addresses[0])
    return Target(parsed.url, parsed.scheme, parsed.host, parsed.port, pinned, parsed.target)
