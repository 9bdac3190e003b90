"""The page at `/`: static, self-contained files (no CDN, no external fonts) served with a
strict Content-Security-Policy. The page talks to the public REST API only, like any other
client.

The files are read once, at import: they are a few kilobytes, and a fixed table of names means
no path from a request ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mesh.errors import MeshError, Reason

HERE = Path(__file__).parent

# Scripts and styles only from this origin, images also from blob: (previews fetched with the
# key) and data: (media tool answers); fetches only to this origin; no frames, no plugins, no
# form posts elsewhere; DOM sinks such as innerHTML need Trusted Types, and none are allowed.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _asset(name: str, media_type: str) -> Asset:
    body = (HERE / name).read_bytes()
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


ASSETS: dict[str, Asset] = {
    "index.html": _asset("index.html", "text/html; charset=utf-8"),
    "app.js": _asset("app.js", "text/javascript; charset=utf-8"),
    "app.css": _asset("app.css", "text/css; charset=utf-8"),
    "icon.svg": _asset("icon.svg", "image/svg+xml"),
}


def _serve(request: Request, asset: Asset) -> Response:
    # Revalidated on every load (cheap: 304 by ETag), so a new version shows at once.
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if asset.etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def page(request: Request) -> Response:
    return _serve(request, ASSETS["index.html"])


async def asset(request: Request) -> Response:
    found = ASSETS.get(request.path_params["name"])
    if found is None or request.path_params["name"] == "index.html":
        raise MeshError(Reason.NOT_FOUND, "No such file.")
    return _serve(request, found)


routes = [
    Route("/", page, methods=["GET"]),
    Route("/web/{name}", asset, methods=["GET"]),
]
