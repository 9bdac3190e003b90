"""Connecting to NATS with reconnects that never give up, and callbacks for health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
import nats.errors
from nats.aio.client import Client

log = logging.getLogger(__name__)

StateCallback = Callable[[bool], Awaitable[None]]


async def connect(url: str, name: str, on_state: StateCallback | None = None) -> Client:
    """Connects (retrying at start too) and reports connection state changes to `on_state`."""

    async def disconnected() -> None:
        log.warning("nats disconnected")
        if on_state:
            await on_state(False)

    async def reconnected() -> None:
        log.info("nats reconnected")
        if on_state:
            await on_state(True)

    async def error(exc: Exception) -> None:
        log.debug("nats error: %s", exc)

    while True:
        try:
            client = await _connect(url, name, disconnected, reconnected, error)
            break
        except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
            # At start-up NATS may still be coming up; the service waits rather than dies.
            log.warning("nats not reachable yet: %s", exc)
            await asyncio.sleep(1.0)
    if on_state:
        await on_state(True)
    return client


async def _connect(
    url: str,
    name: str,
    disconnected: Callable[[], Awaitable[None]],
    reconnected: Callable[[], Awaitable[None]],
    error: Callable[[Exception], Awaitable[None]],
) -> Client:
    return await nats.connect(
        # NATS_URL may name several servers of a cluster, comma-separated.
        servers=[server.strip() for server in url.split(",") if server.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )


async def close(client: Client, flush_seconds: int = 2) -> None:
    """Flushes what is written and closes. Not `drain()`: it waits for a pull subscription's
    pending queue, which nothing consumes once the service has stopped fetching, forever."""
    try:
        await client.flush(timeout=flush_seconds)
    except Exception as exc:  # closing anyway: a flush can fail if NATS is already gone
        log.debug("flush before close failed: %s", exc)
    await client.close()
