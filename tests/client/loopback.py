"""A real HTTP server on 127.0.0.1 that answers from a script, for client tests: each request
takes the next scripted answer (the last one repeats) and is recorded with its headers and a
digest of its body (read in chunks, so a 200 MB upload costs no memory here either)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = 1024 * 1024


@dataclass
class Answer:
    status: int = 200
    body: bytes | Callable[[], Iterator[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection after this many body bytes (a stream that breaks mid-way).
    cut_after: int | None = None

    @classmethod
    def json(cls, status: int, value: Any, **headers: str) -> Answer:
        return cls(
            status, json.dumps(value).encode(), {"Content-Type": "application/json", **headers}
        )


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_bytes: int
    body_sha256: str
    body_head: bytes  # the first 64 KiB, for looking at form fields


class Loopback:
    def __init__(self, answers: list[Answer], on_body: Callable[[bytes], None] | None = None):
        self.answers = answers
        self.seen: list[Seen] = []
        self.on_body = on_body
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _handle(self) -> None:
                server.respond(self)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's names

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        digest, size, head = hashlib.sha256(), 0, b""
        remaining = int(handler.headers.get("Content-Length") or 0)
        while remaining:
            chunk = handler.rfile.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            size += len(chunk)
            digest.update(chunk)
            if len(head) < 65536:
                head += chunk[: 65536 - len(head)]
            if self.on_body is not None:
                self.on_body(chunk)
        self.seen.append(
            Seen(
                handler.command, handler.path, dict(handler.headers), size, digest.hexdigest(), head
            )
        )
        answer = self.answers[min(len(self.seen) - 1, len(self.answers) - 1)]
        chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body()
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if isinstance(answer.body, bytes) and "Content-Length" not in answer.headers:
            handler.send_header("Content-Length", str(len(answer.body)))
        if answer.cut_after is not None or not isinstance(answer.body, bytes):
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        sent = 0
        for chunk in chunks:
            if answer.cut_after is not None and sent + len(chunk) > answer.cut_after:
                handler.wfile.write(chunk[: answer.cut_after - sent])
                handler.wfile.flush()
                return
            handler.wfile.write(chunk)
            handler.wfile.flush()
            sent += len(chunk)
