"""A task JetStream gave up on (every delivery timed out) fails its file instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from launcher.nats import NatsServer
from mesh.bus import streams
from mesh.bus.tasks import TaskSpec
from mesh.options import ConversionOptions
from mesh.tasks.v1 import tasks_pb2
from services.orchestrator.advisories import GAVE_UP, watch_abandoned_tasks


async def test_abandoned_task_becomes_a_failed_result(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await streams.ensure(js, streams.Retention())
        watcher = await watch_abandoned_tasks(nc, js)
        task = TaskSpec(
            task_id="abandoned.0",
            job_id="abandoned",
            tenant="t",
            file_index=0,
            source_blob="src/x",
            source_format="mp4",
            source_family="video",
            filename="v.mp4",
            options=ConversionOptions(format="webm"),
            output_blob="out/abandoned/0",
            compress=False,
        )
        await js.publish(streams.task_subject("media"), task.to_proto().SerializeToString())
        crashing = await js.pull_subscribe(
            streams.task_subject("media"),
            durable="media",
            stream=streams.TASKS_STREAM,
            config=ConsumerConfig(
                durable_name="media", ack_policy=AckPolicy.EXPLICIT, ack_wait=0.5, max_deliver=2
            ),
        )
        for _ in range(2):  # a worker that takes the task and dies, twice
            assert len(await crashing.fetch(1, timeout=30)) == 1
            await asyncio.sleep(0.7)
        # The next worker asking is what makes the server notice the limit (and tell).
        with contextlib.suppress(TimeoutError):
            assert await crashing.fetch(1, timeout=1) == []

        results = await js.pull_subscribe(
            "results.media",
            stream=streams.RESULTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
        )
        deadline = time.monotonic() + 60
        found: list[tasks_pb2.Result] = []
        while not found and time.monotonic() < deadline:
            try:
                for message in await results.fetch(1, timeout=1):
                    found.append(tasks_pb2.Result.FromString(message.data))
                    await message.ack()
            except TimeoutError:
                continue
        assert [r.kind for r in found] == [tasks_pb2.RESULT_KIND_FAILED]
        assert (found[0].task_id, found[0].error_code) == ("abandoned.0", "INTERNAL")
        assert found[0].error_message == GAVE_UP
        assert (await js.stream_info(streams.TASKS_STREAM)).state.messages == 0
        await watcher.unsubscribe()
    finally:
        await nc.close()
