"""The "pyvips direct" side of `bench.e2e`: an HTTP server that does the bench's two conversions
with plain pyvips calls on the request body, one process per core (uvicorn workers), nothing
else on the path. It is the floor the mesh is measured against, not a product.

    .venv/bin/python -m bench.direct --port 8090 --workers 2

`POST /thumbnail`: the body (a JPEG) to 500 px wide, JPEG Q 82. `POST /webp`: the body at full
size to WebP Q 82 at the mesh's effort. The same settings as the mesh's image pipeline.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pyvips
import uvicorn

from services.image import encode

THUMBNAIL = 500
QUALITY = 82

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def thumbnail(body: bytes) -> bytes:
    image = pyvips.Image.thumbnail_buffer(body, THUMBNAIL)
    data: bytes = image.jpegsave_buffer(Q=QUALITY, optimize_coding=True)
    return data


def webp(body: bytes) -> bytes:
    image = pyvips.Image.new_from_buffer(body, "", access="sequential")
    data: bytes = image.webpsave_buffer(Q=QUALITY, effort=encode.LOSSY_WEBP_EFFORT)
    return data


ROUTES: dict[str, tuple[Callable[[bytes], bytes], bytes]] = {
    "/thumbnail": (thumbnail, b"image/jpeg"),
    "/webp": (webp, b"image/webp"),
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    route = ROUTES.get(scope["path"])
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    if route is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    convert, mime = route
    # Blocking on purpose: one conversion at a time per process, one process per core.
    data = convert(b"".join(chunks))
    headers = [(b"content-type", mime), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench.direct:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
