"""A service that starts while its NATS cluster has lost its quorum waits for it instead of
exiting (the chaos run saw restarted workers exit 1 on `streams.ensure` and crash-loop)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats
import pytest

from launcher.nats import start_cluster
from mesh.bus import streams

WITHIN = 120.0


async def test_ensure_waits_for_a_cluster_that_lost_its_quorum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = start_cluster(tmp_path, 3)
    try:
        survivor, *lost = cluster.nodes
        for node in lost:
            node.kill()
        nc = await nats.connect(survivor.url, max_reconnect_attempts=-1)
        try:
            js = nc.jetstream()
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await streams.ensure(js, streams.Retention(), 3)  # what a start did: exit 1
            caplog.set_level(logging.WARNING, logger="mesh.bus.streams")
            waiting = asyncio.create_task(
                streams.ensure_when_ready(js, streams.Retention(), 3, within=WITHIN)
            )
            async with asyncio.timeout(WITHIN):
                while "streams not ready yet" not in caplog.text:
                    assert not waiting.done(), waiting
                    await asyncio.sleep(0.1)
            for node in lost:
                await asyncio.to_thread(node.restart)
            async with asyncio.timeout(WITHIN):
                await waiting
            info = await js.stream_info(streams.TASKS_STREAM)
            assert info.config.num_replicas == 3
        finally:
            await nc.close()
    finally:
        cluster.stop()
