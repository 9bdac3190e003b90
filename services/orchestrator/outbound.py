"""Outbound HTTP to a URL the guard checked: connect to the pinned address, never re-resolve.

The request goes to the address `urlguard` resolved, with the URL's host in the `Host`
header and as the TLS server name (so certificates are verified against the host, not the
address). Redirects are never followed blindly: each `Location` is checked by the guard again and
at most `max_redirects` are followed. 307/308 and also 301/302 repeat the request with its body
(a webhook turned into a GET would deliver nothing); 303 becomes a GET without a body, as RFC 9110
says. Each hop uses a fresh connection: a pooled TLS connection to the same address could carry
another host's server name. Environment proxies are ignored, since a proxy would resolve the
host itself.

`send` keeps at most `max_body` bytes of the answer (enough to log what a receiver said);
`stream` hands the final answer's body out as it arrives, for downloads of any size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from mesh.errors import MeshError, Reason
from services.orchestrator import urlguard

MAX_REDIRECTS = 3
MAX_BODY_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Request:
    method: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    # At most `max_body` bytes of the body: enough to log what a receiver said.
    body: bytes
    url: str


@dataclass(frozen=True)
class Streamed:
    """The final answer of `stream`: its body is read from `chunks`, as it arrives."""

    status: int
    headers: httpx.Headers
    url: str
    chunks: AsyncGenerator[bytes, None]


@dataclass(frozen=True)
class _Policy:
    allow: urlguard.Allowlist
    seconds: float
    max_redirects: int
    field: str


async def send(
    request: Request,
    target: urlguard.Target,
    *,
    allow: urlguard.Allowlist,
    seconds: float = 10.0,
    max_redirects: int = MAX_REDIRECTS,
    max_body: int = MAX_BODY_BYTES,
    field: str = "url",
) -> Response:
    """Sends one request (following checked redirects) within `seconds` in total.

    Raises MeshError: INVALID_FIELD when a redirect leads somewhere the guard refuses,
    UNAVAILABLE when the peer cannot be reached, answers too slowly or redirects too often.
    """
    try:
        async with (
            asyncio.timeout(seconds),
            stream(
                request,
                target,
                allow=allow,
                seconds=seconds,
                max_redirects=max_redirects,
                field=field,
            ) as answer,
        ):
            return Response(answer.status, await _capped(answer.chunks, max_body), answer.url)
    except TimeoutError:
        raise MeshError(Reason.UNAVAILABLE, f"No answer within {seconds:g} s.") from None


async def _capped(chunks: AsyncGenerator[bytes, None], limit: int) -> bytes:
    content = bytearray()
    async with contextlib.aclosing(chunks):
        try:
            async for chunk in chunks:
                content += chunk
                if len(content) >= limit:
                    del content[limit:]
                    break
        except MeshError:
            pass  # a receiver that answered and then broke the body still answered
    return bytes(content)


def _client(policy: _Policy) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=policy.seconds, follow_redirects=False, trust_env=False)


async def _open(
    client: httpx.AsyncClient, request: Request, target: urlguard.Target, policy: _Policy
) -> httpx.Response:
    """Sends the request to the pinned address; the answer's body is left unread."""
    headers = {**request.headers, "Host": target.host_header}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    built = client.build_request(
        request.method,
        target.pinned_url,
        content=request.body or None,
        headers=headers,
        extensions=extensions,
    )
    try:
        return await client.send(built, stream=True)
    except httpx.TimeoutException:
        raise MeshError(Reason.UNAVAILABLE, f"No answer within {policy.seconds:g} s.") from None
    except httpx.HTTPError as exc:
        raise MeshError(Reason.UNAVAILABLE, f"Could not connect: {type(exc).__name__}.") from None


@contextlib.asynccontextmanager
async def stream(
    request: Request,
    target: urlguard.Target,
    *,
    allow: urlguard.Allowlist,
    seconds: float = 10.0,
    max_redirects: int = MAX_REDIRECTS,
    field: str = "url",
) -> AsyncIterator[Streamed]:
    """Like `send`, but the final answer's body streams. `seconds` bounds connecting and each
    read (a peer silent that long fails with TIMEOUT), not the transfer: the caller bounds it."""
    policy = _Policy(allow, seconds, max_redirects, field)
    for _ in range(max_redirects + 1):
        async with _client(policy) as client:
            response = await _open(client, request, target, policy)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECTS or location is None:
                    yield Streamed(
                        response.status_code, response.headers, target.url, _body(response, policy)
                    )
                    return
            finally:
                await response.aclose()
        if response.status_code == 303:
            request = Request("GET", request.headers)
        target = await urlguard.check_async(urljoin(target.url, location), allow, field)
    raise MeshError(Reason.UNAVAILABLE, f"More than {max_redirects} redirects.")


async def _body(response: httpx.Response, policy: _Policy) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException:
        raise MeshError(Reason.TIMEOUT, f"No data arrived for {policy.seconds:g} s.") from None
    except httpx.HTTPError as exc:
        raise MeshError(
            Reason.UNAVAILABLE, f"The connection broke during the body: {type(exc).__name__}."
        ) from None
