"""Chunks nobody finished, removed.

A write removes what it stored when it is aborted (`blobs.write_stream`), but not when its
process dies or the broker is gone at that moment: those chunks would stay until the blob
bucket's expiry, so a key holder who aborts uploads on purpose could fill the disk. Every
replica therefore removes, every half grace period, the chunk groups that have no meta record
and whose newest chunk is older than the grace period (`blobs.sweep_orphan_chunks`); purging
twice is harmless, so replicas need not agree on who does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext

from mesh import blobs
from mesh.bus import streams
from mesh.errors import MeshError

log = logging.getLogger(__name__)


async def sweep_forever(js: JetStreamContext, grace_seconds: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), grace_seconds / 2)
        if stop.is_set():
            return
        try:
            removed = await blobs.sweep_orphan_chunks(js, streams.BLOBS_BUCKET, grace_seconds)
        except MeshError as error:  # NATS away: the next round tries again
            log.warning("orphan chunk sweep failed: %s", error.message)
            continue
        if removed:
            log.info("removed orphan chunk groups", extra={"groups": removed})
