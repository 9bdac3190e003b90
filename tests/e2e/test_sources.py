"""`sourceUrl` and `/api/transfer` through a real mesh of their own: the orchestrator fetches
from a loopback file server its operator allowlist opens (`OUTBOUND_ALLOW_HOSTS`, that port
only), and refuses everything else. Every refused URL points at a loopback canary port that
must see no connection during the whole module.

The mesh's fetch limits are small so that the limits show quickly: a 3 s fetch time limit, a
2 MB upload limit for jobs and a 1 MB sync budget."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from convertmesh import Client
from launcher.mesh import LocalMesh
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS, auth, running_mesh, wait_for_job
from tests.e2e.test_cli import cli
from tests.media.conftest import ffprobe
from tests.mesh.http_receiver import Answer, Received, Receiver
from tests.orchestrator.refused import REFUSED, Canary

MP4 = CORPUS / "go-mediainfo" / "sample.mp4"
PNG = CORPUS / "pillow" / "hopper.png"
MAX_UPLOAD_BYTES = 2_000_000
SYNC_MAX_BYTES = 1_000_000
FETCH_SECONDS = 3


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    running = Canary()
    yield running
    running.close()


@pytest.fixture(scope="module")
def files() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fetching_mesh(
    tmp_path_factory: pytest.TempPathFactory, files: Receiver, canary: Canary
) -> Iterator[LocalMesh]:
    with running_mesh(
        tmp_path_factory.mktemp("fetching"),
        OUTBOUND_ALLOW_HOSTS=f"127.0.0.1:{files.port}",
        MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
        SYNC_MAX_BYTES=str(SYNC_MAX_BYTES),
        SOURCE_URL_TIMEOUT_SECONDS=str(FETCH_SECONDS),
        SOURCE_URL_IDLE_SECONDS="2",
        IMAGE_CONCURRENCY="1",
        MEDIA_CONCURRENCY="1",
        ARCHIVE_CONCURRENCY="1",
    ) as local:
        yield local


@pytest.fixture(scope="module")
async def client(fetching_mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fetching_mesh.http_url, timeout=60) as http:
        yield http


def _serve(files: Receiver, path: str, answer: Answer) -> str:
    async def handler(_: Received) -> Answer:
        return answer

    files.routes[path] = handler
    return files.url(path)


async def _pieces(count: int, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield bytes(size)
        if pause:
            await asyncio.sleep(pause)


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("docs/readme.txt", "hello from the archive\n")
        archive.writestr("hopper.png", PNG.read_bytes())
    return out.getvalue()


def _probe(data: bytes, path: Path) -> dict[str, Any]:
    path.write_bytes(data)
    return ffprobe(path)


async def test_a_job_converts_a_fetched_file_whose_type_is_sniffed(
    client: httpx.AsyncClient, files: Receiver, tmp_path: Path
) -> None:
    url = _serve(files, "/media/clip.bin", (200, {"Content-Type": "text/html"}, MP4.read_bytes()))
    response = await client.post(
        "/api/jobs", headers=auth(), data={"sourceUrl": url, "format": "mp3"}
    )
    assert response.status_code == 200, response.text
    job = await wait_for_job(client, response.json()["jobId"])
    (item,) = job["results"]["files"]
    assert job["status"] == "completed", job
    assert (item["originalFilename"], item["detectedFormat"]) == ("clip.bin", "mp4")
    assert item["originalSize"] == MP4.stat().st_size
    download = await client.get(f"/api/jobs/{job['jobId']}/files/0", headers=auth())
    probed = _probe(download.content, tmp_path / "a.mp3")
    assert [s["codec_name"] for s in probed["streams"]] == ["mp3"]


async def test_convert_and_compress_take_a_source_url(
    client: httpx.AsyncClient, files: Receiver
) -> None:
    url = _serve(files, "/hopper", (200, {}, PNG.read_bytes()))
    converted = await client.post(
        "/api/convert", headers=auth(), data={"sourceUrl": url, "format": "webp"}
    )
    assert converted.status_code == 200, converted.text
    (item,) = converted.json()["files"]
    assert item["mimeType"] == "image/webp"
    assert base64.b64decode(item["downloadUrl"].split(",", 1)[1])[8:12] == b"WEBP"
    compressed = await client.post(
        "/api/compress",
        headers={**auth(), "Accept": "application/octet-stream"},
        json={"sourceUrl": url, "quality": 60},
    )
    assert compressed.status_code == 200, compressed.text
    assert compressed.content[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_tool_takes_a_source_url(client: httpx.AsyncClient, files: Receiver) -> None:
    url = _serve(files, "/clips/sample.mp4", (200, {}, MP4.read_bytes()))
    response = await client.post("/api/media/inspect", headers=auth(), json={"sourceUrl": url})
    assert response.status_code == 200, response.text
    media = response.json()["media"]
    assert (media["filename"], media["width"], media["height"]) == ("sample.mp4", 640, 360)
    assert abs(media["duration"] - 4.0) <= 0.05


async def test_transfer_downloads_stores_and_runs_as_a_job(
    client: httpx.AsyncClient, files: Receiver
) -> None:
    data = PNG.read_bytes()
    url = _serve(files, "/pictures/hopper.png", (200, {"Content-Type": "text/plain"}, data))
    download = await client.post(
        "/api/transfer", headers=auth(), json={"sourceUrl": url, "destination": "download"}
    )
    assert download.status_code == 200, download.text
    assert download.content == data and download.headers["content-type"] == "image/png"

    stored = await client.post("/api/transfer", headers=auth(), json={"sourceUrl": url})
    assert stored.status_code == 200, stored.text
    job = stored.json()
    (item,) = job["results"]["files"]
    assert (job["jobType"], job["status"], item["filename"]) == (
        "transfer",
        "completed",
        "hopper.png",
    )
    linked = await client.get(item["downloadUrl"])  # a signed link: no key needed
    assert linked.status_code == 200 and linked.content == data

    queued = await client.post(
        "/api/transfer", headers=auth(), json={"sourceUrl": url, "async": True}
    )
    assert queued.status_code == 202, queued.text
    finished = await wait_for_job(client, queued.json()["jobId"])
    got = await client.get(f"/api/jobs/{finished['jobId']}/files/0", headers=auth())
    assert got.content == data


async def test_transfer_extract_makes_each_member_a_file(
    client: httpx.AsyncClient, files: Receiver
) -> None:
    url = _serve(files, "/bundle.zip", (200, {}, _zip()))
    queued = await client.post(
        "/api/transfer", headers=auth(), json={"sourceUrl": url, "extract": True, "async": True}
    )
    assert queued.status_code == 202, queued.text
    job = await wait_for_job(client, queued.json()["jobId"])
    assert job["status"] == "completed", job
    members = {item["filename"]: item for item in job["results"]["files"]}
    assert set(members) == {"docs/readme.txt", "hopper.png"}
    assert members["hopper.png"]["mimeType"] == "image/png"
    png = await client.get(
        f"/api/jobs/{job['jobId']}/files/{members['hopper.png']['index']}", headers=auth()
    )
    assert png.content == PNG.read_bytes()
    refused = await client.post(
        "/api/transfer", headers=auth(), json={"sourceUrl": files.url("/hopper"), "extract": True}
    )
    assert refused.status_code == 415


@pytest.mark.parametrize(("url", "why"), REFUSED)
async def test_each_refused_address_class_is_a_400_naming_it(
    client: httpx.AsyncClient, canary: Canary, url: str, why: str
) -> None:
    response = await client.post(
        "/api/jobs",
        headers=auth(),
        data={"sourceUrl": url.format(canary=canary.port), "format": "png"},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "INVALID_FIELD" and why in body["error"]
    assert body["fields"][0]["field"] == "sourceUrl"


async def test_a_redirect_from_the_allowed_host_to_a_refused_one_is_not_followed(
    client: httpx.AsyncClient, files: Receiver, canary: Canary
) -> None:
    target = f"http://127.0.0.1:{canary.port}/secret.png"
    url = _serve(files, "/moved", (302, {"Location": target}, b""))
    response = await client.post("/api/media/thumbnail", headers=auth(), data={"sourceUrl": url})
    assert response.status_code == 400, response.text
    assert "loopback" in response.json()["error"]
    metadata = _serve(files, "/cloud", (307, {"Location": "http://169.254.169.254/latest/"}, b""))
    response = await client.post("/api/transfer", headers=auth(), json={"sourceUrl": metadata})
    assert response.status_code == 400 and "metadata" in response.json()["error"]


async def test_a_body_over_the_limit_is_cut_off_with_413(
    client: httpx.AsyncClient, files: Receiver
) -> None:
    endless = _serve(files, "/endless", (200, {}, _pieces(40, 128 * 1024)))  # 5 MB, no length
    response = await client.post(
        "/api/jobs", headers=auth(), data={"sourceUrl": endless, "format": "png"}
    )
    assert response.status_code == 413, response.text
    assert str(MAX_UPLOAD_BYTES) in response.json()["error"]
    declared = _serve(
        files,
        "/declared",
        (200, {"Content-Length": str(3 * 512 * 1024)}, _pieces(3, 512 * 1024)),
    )
    response = await client.post(
        "/api/media/thumbnail", headers=auth(), data={"sourceUrl": declared}
    )
    assert response.status_code == 413, response.text  # over the 1 MB sync budget
    assert "async=true" in response.json()["error"]


async def test_a_trickling_server_is_cut_off_by_the_time_limit(
    client: httpx.AsyncClient, files: Receiver
) -> None:
    trickle = _serve(files, "/trickle", (200, {}, _pieces(400, 16, pause=0.05)))
    response = await client.post(
        "/api/jobs", headers=auth(), data={"sourceUrl": trickle, "format": "png"}
    )
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["code"] == "TIMEOUT" and "did not arrive within" in body["error"]


def test_the_client_and_cli_send_a_url_as_source_url(
    fetching_mesh: LocalMesh, files: Receiver, tmp_path: Path
) -> None:
    url = _serve(files, "/clips/clip.mp4", (200, {}, MP4.read_bytes()))
    with Client(fetching_mesh.http_url, KEYS["acme"]) as client:
        described = client.inspect(url)
        assert described.media is not None and described.media["width"] == 640
        thumbnail = client.tool("thumbnail", url, dest=tmp_path, width=32, height=32)
        (saved,) = thumbnail.outputs
        assert Image.open(saved.path).size == (32, 32)
        converted = client.convert(source_url=url, format="mp3", dest=tmp_path / "mp3")
        assert [Path(s.path).suffix for s in converted] == [".mp3"]
    done = cli(
        fetching_mesh, "tools", "poster-frame", url, "--width", "320", "-o", str(tmp_path / "p")
    )
    assert done.returncode == 0, done.stderr
    (poster,) = (tmp_path / "p").iterdir()
    assert Image.open(poster).size == (320, 180)


def test_the_canary_saw_no_connection(canary: Canary, fetching_mesh: LocalMesh) -> None:
    assert canary.connections == 0
    assert not fetching_mesh.exited()
