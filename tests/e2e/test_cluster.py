"""The mesh on a real 3-node NATS cluster (three nats-servers on loopback, routes between them)
with NATS_REPLICAS=3: streams created at 1 replica are scaled to 3; jobs complete; the node
leading the task stream is killed and jobs submitted after that still complete; the node
comes back and catches up with every stream. And the orchestrator refuses NATS_REPLICAS the
cluster cannot place."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from PIL import Image

from launcher.mesh import LocalMesh
from launcher.nats import NatsCluster, NatsServer, start_cluster, start_nats
from mesh.bus import streams
from tests.e2e.conftest import auth, create_job, running_mesh, wait_for_job

STREAMS = (
    streams.TASKS_STREAM,
    streams.RESULTS_STREAM,
    streams.CALLBACKS_STREAM,
    f"KV_{streams.JOBS_BUCKET}",
    f"KV_{streams.UPLOADS_BUCKET}",
    f"OBJ_{streams.BLOBS_BUCKET}",
)
PHOTOS = ("pillow/hopper.jpg", "exif-orientation-examples/Landscape_3.jpg")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    base = tmp_path_factory.mktemp("cluster")
    started = start_cluster(base, 3, log_dir=base)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def js(cluster: NatsCluster) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(servers=cluster.url.split(","), max_reconnect_attempts=-1)
    try:
        yield client.jetstream()
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def replicated(
    tmp_path_factory: pytest.TempPathFactory, cluster: NatsCluster, js: JetStreamContext
) -> AsyncIterator[LocalMesh]:
    # An installation that ran at 1 replica before NATS_REPLICAS=3 was set.
    await streams.ensure(js, streams.Retention(), replicas=1)
    assert (await js.stream_info(streams.TASKS_STREAM)).config.num_replicas == 1
    with running_mesh(
        tmp_path_factory.mktemp("replicated"),
        nats_url=cluster.url,
        NATS_REPLICAS="3",
        IMAGE_CONCURRENCY="2",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
    ) as local:
        yield local


async def eventually(check: Any, within: float = 60, what: str = "") -> Any:
    """Polls `check` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except Exception as error:  # an election in progress answers with errors
            result, last = None, error
        else:
            last = result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what} (last: {last!r})")
        await asyncio.sleep(0.25)


async def convert_photos(http: httpx.AsyncClient) -> None:
    """Two jobs at once; each output decodes (Pillow; the worker wrote it with libvips)."""
    created = [await create_job(http, [photo], {"format": "png"}) for photo in PHOTOS]
    for response in created:
        assert response.status_code == 200, response.text
    for response in created:
        job = await wait_for_job(http, response.json()["jobId"], within=120)
        assert job["status"] == "completed", job
        url = job["results"]["files"][0]["downloadUrl"]
        download = await http.get(url, headers=auth())
        assert download.status_code == 200
        assert Image.open(io.BytesIO(download.content)).format == "PNG"


def monitoring(node: NatsServer, path: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{node.monitor_port}/{path}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        report: dict[str, Any] = json.load(answer)
    return report


def jsz(node: NatsServer) -> dict[str, dict[str, Any]]:
    """The node's own view of its streams (monitoring endpoint): name -> detail."""
    report = monitoring(node, "jsz?accounts=true&streams=true")
    return {
        stream["name"]: stream
        for account in report.get("account_details", [])
        for stream in account.get("stream_detail", [])
    }


async def test_jobs_survive_losing_a_node_and_the_node_catches_up(
    cluster: NatsCluster, js: JetStreamContext, replicated: LocalMesh
) -> None:
    # Every stream and bucket now lives on all three servers, every worker consumer too. The
    # config says so at once; the peers show in the stream's cluster info once they report in.
    for name in STREAMS:
        info = await js.stream_info(name)
        assert info.config.num_replicas == 3, name

    async def streams_replicated() -> bool:
        for name in STREAMS:
            info = await js.stream_info(name)
            if info.cluster is None or len(info.cluster.replicas or []) != 2:
                return False
        return True

    await eventually(streams_replicated, what="every stream on 3 servers")

    async def consumers_replicated() -> bool:
        for service in ("image", "media", "archive"):
            consumer = await js.consumer_info(streams.TASKS_STREAM, service)
            if consumer.cluster is None or len(consumer.cluster.replicas or []) != 2:
                return False
        return True

    await eventually(consumers_replicated, what="worker consumers on 3 servers")

    async with httpx.AsyncClient(base_url=replicated.http_url, timeout=60) as http:
        await convert_photos(http)

        # Kill the server leading the task stream: the harshest single loss.
        info = await js.stream_info(streams.TASKS_STREAM)
        assert info.cluster is not None
        leader = info.cluster.leader
        (victim,) = [node for node in cluster.nodes if node.name == leader]
        victim.kill()

        survivor = next(node for node in cluster.nodes if node is not victim)

        async def led_by_survivors() -> bool:
            meta = monitoring(survivor, "jsz").get("meta_cluster", {})
            if meta.get("leader") in (None, "", leader):
                return False
            for name in STREAMS:
                now = await js.stream_info(name)
                elected = now.cluster.leader if now.cluster else None
                if not elected or elected == leader:
                    return False
            return True

        # Every stream the victim led elects another leader (what clients wait through).
        await eventually(led_by_survivors, what="every stream led by a surviving server")
        await convert_photos(http)

        # Back with its old store: it catches up with everything written while it was away.
        victim.restart()

        async def caught_up() -> bool:
            mine = jsz(victim)
            for name in STREAMS:
                info = await js.stream_info(name)
                peers = info.cluster.replicas if info.cluster else None
                if not peers or not all(p.current and not p.offline for p in peers):
                    return False
                if name not in mine or mine[name]["state"]["last_seq"] != info.state.last_seq:
                    return False
            return True

        await eventually(caught_up, within=90, what=f"{leader} current on every stream")
        await convert_photos(http)


def orchestrator_refusal(nats_url: str, replicas: int) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "services.orchestrator"],
        env={
            **os.environ,
            "NATS_URL": nats_url,
            "NATS_REPLICAS": str(replicas),
            "GRPC_PORT": "0",
            "LINK_SIGNING_KEYS": "k" * 32,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


def test_the_orchestrator_refuses_more_replicas_than_the_cluster_has(
    cluster: NatsCluster,
) -> None:
    code, stderr = orchestrator_refusal(cluster.url, 5)
    assert code != 0
    assert "refuses to start: NATS_REPLICAS=5 needs a JetStream cluster of at least 5" in stderr


def test_the_orchestrator_refuses_replicas_on_a_single_server(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "single")
    try:
        code, stderr = orchestrator_refusal(server.url, 3)
    finally:
        server.stop()
    assert code != 0
    assert "NATS_REPLICAS=3 needs a JetStream cluster of at least 3" in stderr
    assert "non-clustered" in stderr
