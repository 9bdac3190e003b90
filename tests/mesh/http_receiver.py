"""A scripted HTTP receiver on loopback for outbound tests: uvicorn in its own thread.

Each path answers with the handler registered for it (200 by default) and every request is
recorded with its arrival time, so tests can check headers, bodies and retry spacing. A handler
may answer with an async iterator of bytes: the body then streams, piece by piece, chunked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from launcher.nats import free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Answer = tuple[int, dict[str, str], bytes | AsyncIterator[bytes]]
Handler = Callable[[Received], Awaitable[Answer]]


async def ok(_: Received) -> Answer:
    return 200, {}, b"ok"


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.routes: dict[str, Handler] = {}
        self._server = uvicorn.Server(
            uvicorn.Config(
                self._app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                interface="asgi3",
                # h11 sends scripted hostile headers (control characters) as given; httptools,
                # uvicorn's choice when installed, refuses them and drops the connection.
                http="h11",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> Receiver:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received = Received(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            at=time.monotonic(),
        )
        self.requests.append(received)
        try:
            status, headers, content = await self.routes.get(scope["path"], ok)(received)
        except asyncio.CancelledError:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        if isinstance(content, bytes):
            await send({"type": "http.response.body", "body": content})
            return
        try:
            async for piece in content:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except (asyncio.CancelledError, OSError):
            return  # the client went away
        await send({"type": "http.response.body", "body": b""})
