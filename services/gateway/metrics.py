"""Request metrics for every route, labelled by the route's template (never the raw path, so
ids and bogus URLs cannot blow up the label set), and the `/metrics` endpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh import telemetry


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = route_template(self._routes, scope)
                telemetry.HTTP_SECONDS.labels(route, scope["method"]).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self._app(scope, receive, observed)
        finally:
            route = route_template(self._routes, scope)
            telemetry.HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()


async def metrics(request: Request) -> Response:
    return Response(telemetry.exposition(), media_type=telemetry.CONTENT_TYPE)
