"""Issue 11: a sync conversion of one small file goes straight to a worker (the orchestrator's
Convert, NATS request/reply), storing nothing; everything else, and whatever that path cannot
do, is a job as before. Its answers must be the job path's, byte for byte."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import nats
import pytest
from PIL import Image

from launcher.mesh import LocalMesh
from launcher.nats import free_port
from tests.corpus import CORPUS
from tests.e2e.chaos_support import noisy_jpeg, process_exit
from tests.e2e.conftest import auth, running_mesh
from tests.e2e.test_sync import decode_data_url

INLINE_MAX = 768 * 1024
MAX_ACTIVE = 6
PHOTO = CORPUS / "exif-orientation-examples/Landscape_1.jpg"
THUMBNAIL = {"format": "jpg", "resize": "width", "resizeWidth": "500", "compression": "82"}
STORES = ("OBJ_blobs", "KV_jobs", "KV_uploads", "KV_settled", "TASKS", "RESULTS")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("inline"),
        IMAGE_CONCURRENCY="2",
        SYNC_INLINE_MAX_BYTES=str(INLINE_MAX),
        SYNC_INLINE_SILENCE_SECONDS="3",
        MAX_ACTIVE_JOBS_PER_TENANT=str(MAX_ACTIVE),
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
async def api(local: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=local.http_url, timeout=90) as client:
        yield client


async def metric(port: int, name: str, **labels: str) -> float:
    """The sum of `name` over the series with these labels (0 when there is none)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def orchestrator(local: LocalMesh) -> int:
    return local.config.metrics_ports["orchestrator"]


async def inline_count(local: LocalMesh, outcome: str, service: str = "image") -> float:
    return await metric(
        orchestrator(local), "convertmesh_sync_inline_total", service=service, outcome=outcome
    )


async def stored(local: LocalMesh) -> dict[str, int]:
    """The last sequence of every stream a job writes to."""
    nc = await nats.connect(local.nats_url)
    try:
        js = nc.jetstream()
        return {name: (await js.stream_info(name)).state.last_seq for name in STORES}
    finally:
        await nc.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


async def convert(
    api: httpx.AsyncClient,
    content: bytes,
    data: dict[str, str],
    *,
    route: str = "/api/convert",
    name: str = "photo.jpg",
    headers: dict[str, str] | None = None,
    tenant: str = "acme",
) -> httpx.Response:
    return await api.post(
        route,
        headers={**auth(tenant), **(headers or {})},
        data=data,
        files=[("files", (name, content, "application/octet-stream"))],
    )


@pytest.fixture(scope="module")
async def warm(local: LocalMesh, api: httpx.AsyncClient) -> None:
    """Until the image worker serves inline (the gateway is healthy before workers are)."""
    small = (CORPUS / "pillow/hopper.png").read_bytes()

    async def served() -> bool:
        response = await convert(api, small, {"format": "jpg"}, name="hopper.png")
        assert response.status_code == 200, response.text
        return await inline_count(local, "converted") >= 1

    await eventually(served, 90, "a conversion answered inline")


def durable() -> dict[str, str]:
    """An Idempotency-Key sends a sync request the job way (its retry must find the job)."""
    return {"Idempotency-Key": os.urandom(8).hex()}


@pytest.mark.usefixtures("warm")
async def test_a_small_sync_conversion_is_answered_inline_and_stores_nothing(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    port = orchestrator(local)
    before = await stored(local)
    converted = await inline_count(local, "converted")
    created = await metric(port, "convertmesh_jobs_created_total", type="convert")
    finished = await metric(port, "convertmesh_jobs_finished_total", outcome="completed")
    files = await metric(port, "convertmesh_files_finished_total", outcome="completed")
    response = await convert(
        api, PHOTO.read_bytes(), THUMBNAIL, headers={"Accept": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))  # pyvips wrote it, Pillow reads it
    image.load()
    assert (image.format, image.size) == ("JPEG", (500, 333))
    assert await stored(local) == before  # no blob, no KV revision, no task, no result
    assert await inline_count(local, "converted") == converted + 1
    # Counted as the job path counts a job and its file.
    assert await metric(port, "convertmesh_jobs_created_total", type="convert") == created + 1
    assert await metric(port, "convertmesh_jobs_finished_total", outcome="completed") == (
        finished + 1
    )
    assert await metric(port, "convertmesh_files_finished_total", outcome="completed") == files + 1


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize(
    ("route", "data", "accept"),
    [
        ("/api/convert", {"format": "webp", "resize": "email"}, ""),
        ("/api/convert", THUMBNAIL, "application/octet-stream"),
        # An output larger than a NATS message: answered in several.
        ("/api/convert", {"format": "png"}, "application/octet-stream"),
        ("/api/compress", {"quality": "40"}, ""),
        ("/api/compress", {"quality": "95"}, ""),  # not smaller: the original, kept
    ],
)
async def test_inline_answers_are_the_job_paths(
    local: LocalMesh, api: httpx.AsyncClient, route: str, data: dict[str, str], accept: str
) -> None:
    photo = PHOTO.read_bytes()
    headers = {"Accept": accept} if accept else {}
    converted = await inline_count(local, "converted")
    inline = await convert(api, photo, data, route=route, headers=headers)
    assert await inline_count(local, "converted") == converted + 1
    before = await stored(local)
    job = await convert(api, photo, data, route=route, headers={**headers, **durable()})
    assert (await stored(local))["TASKS"] > before["TASKS"]  # that one was a job
    assert (inline.status_code, job.status_code) == (200, 200), (inline.text, job.text)
    assert inline.content == job.content
    if data.get("format") == "png":
        assert len(inline.content) > 1024 * 1024
    for header in ("content-type", "content-length", "content-disposition", "etag"):
        assert inline.headers.get(header) == job.headers.get(header), header
    if not accept:
        body = inline.json()
        assert body["storage"] == {"saved": False}
        (item,) = body["files"]
        mime, output = decode_data_url(item["downloadUrl"])
        assert (mime, len(output)) == (item["mimeType"], item["finalSize"])
        Image.open(io.BytesIO(output)).load()
        if route == "/api/compress" and data["quality"] == "40":
            assert item["appliedQuality"] == 40 and item["savedPercent"] > 0


@pytest.mark.usefixtures("warm")
async def test_a_source_over_the_threshold_is_a_job(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    noise = Image.frombytes("RGB", (640, 480), os.urandom(640 * 480 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    large = buffer.getvalue()
    assert len(large) > INLINE_MAX
    converted = await inline_count(local, "converted")
    before = await stored(local)
    response = await convert(
        api,
        large,
        {"format": "jpg"},
        name="noise.png",
        headers={"Accept": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (640, 480)
    after = await stored(local)
    assert after["OBJ_blobs"] > before["OBJ_blobs"] and after["TASKS"] > before["TASKS"]
    assert await inline_count(local, "converted") == converted


@pytest.mark.usefixtures("warm")
async def test_a_bomb_inline_is_refused_typed_and_the_worker_survives(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    bomb = (CORPUS / "pillow/decompression_bomb.gif").read_bytes()
    assert len(bomb) <= INLINE_MAX
    worker = local.processes["image"]
    failed = await inline_count(local, "failed")
    inline = await convert(api, bomb, {"format": "png"}, name="bomb.gif")
    assert await inline_count(local, "failed") == failed + 1
    job = await convert(api, bomb, {"format": "png"}, name="bomb.gif", headers=durable())
    assert inline.status_code == job.status_code and inline.status_code in (413, 422)
    refused, expected = inline.json(), job.json()
    # Each names its own job (the inline one was never stored).
    assert refused.pop("meta").keys() == expected.pop("meta").keys() == {"jobId"}
    assert refused == expected
    assert worker.poll() is None
    converted = await inline_count(local, "converted")
    response = await convert(api, PHOTO.read_bytes(), THUMBNAIL)
    assert response.status_code == 200, response.text
    assert await inline_count(local, "converted") == converted + 1


@pytest.mark.usefixtures("warm")
async def test_a_worker_killed_mid_request_answers_200_or_503_with_retry_after(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    # A few seconds of AV1 encoding, small enough to go inline.
    slow = noisy_jpeg(1200, 800, seed=11)
    assert len(slow) <= INLINE_MAX
    image_port = local.config.metrics_ports["image"]
    silent = await inline_count(local, "silent")
    no_responders = await inline_count(local, "no_responders")
    request = asyncio.create_task(convert(api, slow, {"format": "avif"}))
    # Meanwhile two clients send thumbnails back to back, through the kill and the restart.
    photo = PHOTO.read_bytes()
    loaded: list[httpx.Response] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            bytes_wanted = {"Accept": "application/octet-stream"}
            loaded.append(await convert(api, photo, THUMBNAIL, headers=bytes_wanted))

    loaders = [asyncio.create_task(load()) for _ in range(2)]

    async def converting() -> bool:
        in_flight = await metric(image_port, "convertmesh_tasks_in_flight", service="image")
        return in_flight >= 1 or request.done()

    await eventually(converting, 60, "the image worker converting the request")
    assert not request.done(), request.result().text
    worker = local.processes["image"]
    worker.send_signal(signal.SIGKILL)
    assert await process_exit(worker, 10) == -signal.SIGKILL
    # With no image worker at all, a second request finds no responder.
    second = asyncio.create_task(convert(api, PHOTO.read_bytes(), THUMBNAIL))

    async def refused_by_nats() -> bool:
        return await inline_count(local, "no_responders") > no_responders or second.done()

    await eventually(refused_by_nats, 30, "the second request finding no image worker")

    async def went_silent() -> bool:
        return await inline_count(local, "silent") > silent or request.done()

    await eventually(went_silent, 30, "the killed worker's request given up as silent")
    # Restarted, as Kubernetes would (its metrics on a fresh port).
    local.start_service(
        "image", env={**local.environment("image"), "METRICS_PORT": str(free_port())}
    )
    converted = await inline_count(local, "converted")

    async def serving_again() -> bool:
        return await inline_count(local, "converted") > converted

    await eventually(serving_again, 90, "the restarted worker answering inline")
    stop.set()
    await asyncio.gather(*loaders)
    for answer in await asyncio.gather(request, second):
        if answer.status_code == 503:
            assert answer.headers["retry-after"].isdigit(), answer.headers
            continue
        assert answer.status_code == 200, answer.text
        (item,) = answer.json()["files"]
        _, output = decode_data_url(item["downloadUrl"])
        Image.open(io.BytesIO(output)).load()
    assert await inline_count(local, "silent") >= silent + 1
    assert loaded
    for answer in loaded:
        if answer.status_code == 503:
            assert answer.headers["retry-after"].isdigit(), answer.headers
            continue
        assert answer.status_code == 200, answer.text
        assert Image.open(io.BytesIO(answer.content)).size == (500, 333)


def _zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6)), data)
    return buffer.getvalue()


MEDIA_AND_ARCHIVE = {
    "media": ("sample.wav", (CORPUS / "go-mediainfo/sample.wav").read_bytes(), {"format": "mp3"}),
    "archive": ("notes.zip", _zip_of({"a.txt": b"a" * 5000, "b/c.txt": b"c"}), {"format": "7z"}),
}


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("service", list(MEDIA_AND_ARCHIVE))
async def test_media_and_archive_workers_answer_inline_too(
    local: LocalMesh, api: httpx.AsyncClient, service: str
) -> None:
    name, content, data = MEDIA_AND_ARCHIVE[service]

    async def answered() -> float:
        return await inline_count(local, "converted", service)

    converted = await answered()
    before = await stored(local)
    bytes_wanted = {"Accept": "application/octet-stream"}
    inline = await convert(api, content, data, name=name, headers=bytes_wanted)
    assert inline.status_code == 200, inline.text
    if await answered() == converted:
        # The worker may not have been listening yet (no responder): then it was a job.
        assert (await stored(local))["TASKS"] > before["TASKS"]
        inline = await convert(api, content, data, name=name, headers=bytes_wanted)
        assert inline.status_code == 200, inline.text
    assert await answered() == converted + 1
    job = await convert(api, content, data, name=name, headers={**bytes_wanted, **durable()})
    assert job.status_code == 200, job.text
    assert inline.content == job.content
    for header in ("content-type", "content-length", "content-disposition", "etag"):
        assert inline.headers.get(header) == job.headers.get(header), header


@pytest.mark.usefixtures("warm")
async def test_inline_conversions_count_against_the_tenants_unfinished_jobs(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    slow = noisy_jpeg(1600, 1000, seed=5)
    assert len(slow) <= INLINE_MAX
    running = [
        asyncio.create_task(convert(api, slow, {"format": "avif"}, tenant="globex"))
        for _ in range(MAX_ACTIVE)
    ]

    async def all_sent() -> bool:
        sent = await metric(orchestrator(local), "convertmesh_sync_inline_running")
        assert not any(task.done() for task in running), [
            t.result().text for t in running if t.done()
        ]
        return sent >= MAX_ACTIVE

    await eventually(all_sent, 60, "every slow conversion sent to the worker")
    small = (CORPUS / "pillow/hopper.png").read_bytes()
    refused = await convert(api, small, {"format": "jpg"}, name="h.png", tenant="globex")
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.headers["retry-after"].isdigit()
    # A job of the same tenant is refused as well while they run.
    job = await api.post(
        "/api/jobs",
        headers=auth("globex"),
        data={"format": "jpg"},
        files=[("files", ("h.png", small, "image/png"))],
    )
    if not all(task.done() for task in running):
        assert job.status_code == 429, job.text
    for answer in await asyncio.gather(*running):
        assert answer.status_code == 200, answer.text
    # Once they are done, the tenant converts again.
    again = await convert(api, small, {"format": "jpg"}, name="h.png", tenant="globex")
    assert again.status_code == 200, again.text


WAV = CORPUS / "go-mediainfo/sample.wav"
LOGO = CORPUS / "pillow/hopper.png"
# tool -> (worker service, source, fields, Accept): a media tool's synchronous run over one small
# file goes the same way as /api/convert.
TOOL_RUNS = {
    "transform": ("image", PHOTO, {"format": "webp", "width": "400"}, "application/octet-stream"),
    "thumbnail": ("image", PHOTO, {"width": "256", "height": "256"}, ""),
    "inspect": ("media", WAV, {}, ""),
    "trim": ("media", WAV, {"start": "0", "duration": "1"}, "application/octet-stream"),
}


async def run_tool(
    api: httpx.AsyncClient,
    tool: str,
    source: os.PathLike[str],
    data: dict[str, str],
    headers: dict[str, str],
    *,
    extra: dict[str, tuple[str, bytes, str]] | None = None,
) -> httpx.Response:
    path = CORPUS / source
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream"))]
    files += [(field, value) for field, value in (extra or {}).items()]
    return await api.post(
        f"/api/media/{tool}", headers={**auth("acme"), **headers}, data=data, files=files
    )


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("tool", list(TOOL_RUNS))
async def test_a_sync_media_tool_over_one_small_file_is_answered_inline(
    local: LocalMesh, api: httpx.AsyncClient, tool: str
) -> None:
    service, source, data, accept = TOOL_RUNS[tool]
    headers = {"Accept": accept} if accept else {}

    async def answered() -> float:
        return await inline_count(local, "converted", service)

    converted = await answered()
    before = await stored(local)
    inline = await run_tool(api, tool, source, data, headers)
    assert inline.status_code == 200, inline.text
    if await answered() == converted:
        # The worker may not have been listening yet (no responder): then it was a job.
        assert (await stored(local))["TASKS"] > before["TASKS"]
        before = await stored(local)
        inline = await run_tool(api, tool, source, data, headers)
        assert inline.status_code == 200, inline.text
    assert await answered() == converted + 1
    assert await stored(local) == before  # no blob, no KV revision, no task, no result
    job = await run_tool(api, tool, source, data, {**headers, **durable()})
    assert job.status_code == 200, job.text
    assert (await stored(local))["TASKS"] > before["TASKS"]  # that one was a job
    assert inline.content == job.content
    for header in ("content-type", "content-length", "content-disposition", "etag"):
        assert inline.headers.get(header) == job.headers.get(header), header
    if tool == "transform":
        image = Image.open(io.BytesIO(inline.content))  # pyvips wrote it, Pillow reads it
        image.load()
        assert (image.format, image.width) == ("WEBP", 400)
    elif tool == "thumbnail":
        (item,) = inline.json()["files"]
        mime, output = decode_data_url(item["downloadUrl"])
        assert mime == item["mimeType"] == "image/jpeg"
        assert Image.open(io.BytesIO(output)).size == (256, 256)
    elif tool == "inspect":
        assert inline.json()["media"]["kind"] == "audio"


@pytest.mark.usefixtures("warm")
async def test_a_tool_with_a_second_file_or_in_the_background_is_a_job(
    local: LocalMesh, api: httpx.AsyncClient
) -> None:
    converted = await inline_count(local, "converted")
    before = await stored(local)
    logo = ("hopper.png", LOGO.read_bytes(), "image/png")
    marked = await run_tool(
        api,
        "watermark",
        PHOTO,
        {},
        {"Accept": "application/octet-stream"},
        extra={"watermarkFile": logo},
    )
    assert marked.status_code == 200, marked.text
    Image.open(io.BytesIO(marked.content)).load()
    middle = await stored(local)
    assert middle["TASKS"] > before["TASKS"]
    queued = await run_tool(api, "transform", PHOTO, {"format": "png", "async": "true"}, {})
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["jobId"]
    assert (await stored(local))["TASKS"] > middle["TASKS"]
    assert await inline_count(local, "converted") == converted

    async def done() -> bool:
        job = await api.get(f"/api/jobs/{job_id}", headers=auth("acme"))
        assert job.status_code == 200, job.text
        return bool(job.json()["status"] == "completed")

    await eventually(done, 90, "the background tool job completed")
