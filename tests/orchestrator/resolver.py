"""A stand-in for the resolver: the C library's `getaddrinfo` replaced, for name lookups only, by
one that answers as a resolver would (or never answers, as these machines' resolver sometimes
does). Numeric parsing (`AI_NUMERICHOST`) stays the C library's own."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

GetAddrInfo = Callable[..., list[Any]]


def replace_resolver(monkeypatch: pytest.MonkeyPatch, lookup: GetAddrInfo) -> list[str]:
    """Puts `lookup` where a name would go to the resolver; numeric parsing stays the C
    library's own. Returns the names that reached `lookup`."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            return list(real(host, port, *args, **kwargs))
        asked.append(host)
        return lookup(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def failing(errno: int) -> GetAddrInfo:
    def lookup(host: str, port: int) -> list[Any]:
        raise socket.gaierror(errno, "resolver says no")

    return lookup


def answering(address: str) -> GetAddrInfo:
    def lookup(host: str, port: int) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return lookup
