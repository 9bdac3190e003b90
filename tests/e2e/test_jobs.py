"""The spine through every real component: REST in, conversion, download out."""

from __future__ import annotations

import io
import json
import os
import signal

import httpx
from PIL import Image

from launcher.mesh import LocalMesh
from tests.clients import body_fields
from tests.e2e.conftest import MAX_ACTIVE_JOBS, auth, create_job, wait_for_job

SEED = {
    "jobType": "convert",
    "saveToStorage": "true",
    "formats": '["jpg"]',
    "compressions": "[82]",
    "resizes": '["original"]',
    "createArchive": "false",
}


async def test_seed_request_gives_upright_1800x1200_jpeg(http: httpx.AsyncClient) -> None:
    response = await create_job(http, ["exif-orientation-examples/Landscape_6.jpg"], SEED)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert set(body) == {"jobId", "status"}

    job = await wait_for_job(http, body["jobId"])
    assert job["status"] == "completed", job
    item = job["results"]["files"][0]
    assert (item["width"], item["height"], item["mimeType"]) == (1800, 1200, "image/jpeg")

    download = await http.get(item["downloadUrl"], headers=auth())
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/jpeg"
    assert int(download.headers["content-length"]) == len(download.content) == item["finalSize"]
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "JPEG"
    assert image.size == (1800, 1200)
    assert image.getexif().get(0x0112, 1) == 1


async def test_upright_output_matches_the_unrotated_original(http: httpx.AsyncClient) -> None:
    created = [
        (await create_job(http, [f"exif-orientation-examples/Landscape_{n}.jpg"], SEED)).json()
        for n in (1, 6)
    ]
    pixels = []
    for body in created:
        job = await wait_for_job(http, body["jobId"])
        download = await http.get(job["results"]["files"][0]["downloadUrl"], headers=auth())
        image = Image.open(io.BytesIO(download.content)).convert("L").resize((180, 120))
        pixels.append(list(image.tobytes()))
    difference = sum(abs(a - b) for a, b in zip(*pixels, strict=True)) / len(pixels[0])
    assert difference < 8, f"mean difference {difference:.1f} says the photo is not upright"


async def test_another_tenant_cannot_see_cancel_or_download(http: httpx.AsyncClient) -> None:
    body = (await create_job(http, ["pillow/hopper.jpg"], {"format": "png"})).json()
    job = await wait_for_job(http, body["jobId"])
    assert job["status"] == "completed"
    job_id = body["jobId"]
    for method, path in (
        ("GET", f"/api/jobs/{job_id}"),
        ("DELETE", f"/api/jobs/{job_id}"),
        ("GET", f"/api/jobs/{job_id}/files/0"),
    ):
        response = await http.request(method, path, headers=auth("globex"))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "NOT_FOUND"
    listed = (await http.get("/api/jobs", headers=auth("globex"))).json()
    assert job_id not in {j["jobId"] for j in listed["jobs"]}


async def test_bogus_format_is_a_400_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await create_job(http, ["pillow/hopper.png"], {"format": "bogus"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "INVALID_FIELD"
    assert "format" in body_fields(response)


async def test_every_bad_field_is_reported_in_one_400(http: httpx.AsyncClient) -> None:
    response = await create_job(
        http,
        ["pillow/hopper.png", "pillow/hopper.jpg"],
        {"format": "png", "compressions": "[50]", "resize": "huge", "autoOrient": "maybe"},
    )
    assert response.status_code == 400
    fields = body_fields(response)
    assert {"compressions", "resize", "autoOrient"} <= set(fields)


async def test_corrupt_file_fails_alone_and_job_completes(http: httpx.AsyncClient) -> None:
    response = await create_job(
        http, ["pillow/hopper.png", "pillow/broken.png", "pillow/hopper.jpg"], {"format": "webp"}
    )
    job = await wait_for_job(http, response.json()["jobId"])
    assert job["status"] == "completed"
    assert (job["completedFiles"], job["failedFiles"]) == (2, 1)
    statuses = [f["status"] for f in job["results"]["files"]]
    assert statuses == ["completed", "failed", "completed"]
    broken = job["results"]["files"][1]
    assert broken["errorCode"] == "CORRUPT_INPUT"
    assert broken["errorMessage"] and "/" not in broken["errorMessage"]
    assert broken["downloadUrl"] is None
    for item in (job["results"]["files"][0], job["results"]["files"][2]):
        download = await http.get(item["downloadUrl"], headers=auth())
        assert Image.open(io.BytesIO(download.content)).format == "WEBP"


async def test_a_job_whose_only_file_fails_is_failed(http: httpx.AsyncClient) -> None:
    response = await create_job(http, ["pillow/broken.png"], {"format": "png"})
    job = await wait_for_job(http, response.json()["jobId"])
    assert job["status"] == "failed"
    assert job["errorMessage"]


async def test_unsupported_pair_is_refused_at_creation_with_415(http: httpx.AsyncClient) -> None:
    response = await create_job(http, ["small/mp3.mp3"], {"format": "png"})
    assert response.status_code == 415
    body = response.json()
    assert body["code"] == "UNSUPPORTED_PAIR"
    assert "mp3" in body["error"] and "png" in body["error"]


async def test_file_is_routed_by_content_not_by_name(http: httpx.AsyncClient) -> None:
    png = (await create_job(http, ["pillow/hopper.png"], {"format": "jpg"})).json()
    job = await wait_for_job(http, png["jobId"])
    assert job["results"]["files"][0]["detectedFormat"] == "png"
    renamed = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"format": "png"},
        files=[
            ("files", ("song.jpg", b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(64), "image/jpeg"))
        ],
    )
    assert renamed.status_code == 415
    assert "mp3" in renamed.json()["error"]


async def test_requests_without_a_valid_key_are_401(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/jobs")).status_code == 401
    wrong = await http.get("/api/jobs", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "UNAUTHENTICATED"
    assert (
        await http.get("/api/jobs", headers={"x-api-key": "key-acme-0123456789"})
    ).status_code == 200


async def test_listing_is_newest_first_with_pagination(http: httpx.AsyncClient) -> None:
    ids = []
    for _ in range(3):
        ids.append(
            (
                await create_job(
                    http, ["small/png-transparent.png"], {"format": "gif"}, tenant="globex"
                )
            ).json()["jobId"]
        )
    page = (await http.get("/api/jobs?limit=2&offset=0", headers=auth("globex"))).json()
    assert [j["jobId"] for j in page["jobs"]] == ids[::-1][:2]
    assert page["pagination"]["limit"] == 2
    assert page["pagination"]["total"] >= 3
    assert page["pagination"]["hasMore"] is True
    bad = await http.get("/api/jobs?limit=0", headers=auth("globex"))
    assert bad.status_code == 400


async def test_idempotency_key_returns_the_first_job(http: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": os.urandom(8).hex()}
    first = await create_job(http, ["pillow/hopper.jpg"], {"format": "png"}, headers=key)
    again = await create_job(http, ["pillow/hopper.jpg"], {"format": "png"}, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json()["jobId"] == again.json()["jobId"]
    other = await create_job(http, ["pillow/hopper.jpg"], {"format": "webp"}, headers=key)
    assert other.status_code == 409
    assert other.json()["code"] == "IDEMPOTENCY_MISMATCH"


async def test_pending_job_can_be_cancelled_and_is_never_converted(
    http: httpx.AsyncClient, mesh: LocalMesh
) -> None:
    image_worker = mesh.processes["image"]
    image_worker.send_signal(signal.SIGSTOP)
    try:
        body = (await create_job(http, ["pillow/hopper.jpg"], {"format": "png"})).json()
        cancelled = await http.delete(f"/api/jobs/{body['jobId']}", headers=auth())
        assert cancelled.status_code == 200, cancelled.text
        # Convertly's SDKs wait for completed or failed: a cancelled job is failed, flagged.
        shown = cancelled.json()
        assert (shown["status"], shown["cancelled"], shown["errorMessage"]) == (
            "failed",
            True,
            "Cancelled",
        )
        assert shown["cancelledAt"] is not None
    finally:
        image_worker.send_signal(signal.SIGCONT)
    done = (await create_job(http, ["pillow/hopper.jpg"], {"format": "png"})).json()
    await wait_for_job(http, done["jobId"])  # the worker has caught up past the cancelled task
    job = await wait_for_job(http, body["jobId"])
    assert (job["status"], job["cancelled"]) == ("failed", True)
    assert job["results"]["files"][0]["status"] == "failed"
    assert job["results"]["files"][0]["errorCode"] == "CANCELLED"
    listed = await http.get("/api/jobs", params={"status": "cancelled"}, headers=auth())
    assert body["jobId"] in {j["jobId"] for j in listed.json()["jobs"]}
    again = await http.delete(f"/api/jobs/{done['jobId']}", headers=auth())
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"


async def test_healthz_is_ok_when_everything_is_up(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.text)["status"] == "ok"


def parse_events(text: str) -> list[tuple[str, dict[str, object], str | None]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = fields.get(name, "") + value
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return events


async def test_events_stream_every_file_and_ends_with_the_terminal_state(
    http: httpx.AsyncClient,
) -> None:
    body = (
        await create_job(
            http,
            ["exif-orientation-examples/Landscape_3.jpg", "pillow/hopper.png", "pillow/broken.png"],
            {"format": "avif"},
        )
    ).json()
    async with http.stream("GET", f"/api/jobs/{body['jobId']}/events", headers=auth()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    events = parse_events(text)
    assert events[-1][0] == "end"
    assert events[-1][1]["status"] == "completed"
    jobs = [data for kind, data, _ in events if kind == "job"]
    assert jobs[-1]["status"] == "completed"
    ids = [int(i) for kind, _, i in events if kind == "job" and i]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finished = {
        data["index"]: data["status"]
        for kind, data, _ in events
        if kind == "file" and data["status"] in ("completed", "failed")
    }
    assert finished == {0: "completed", 1: "completed", 2: "failed"}

    resumed = await http.get(
        f"/api/jobs/{body['jobId']}/events", headers={**auth(), "Last-Event-ID": str(ids[-1])}
    )
    again = parse_events(resumed.text)
    assert [kind for kind, _, _ in again][-2:] == ["job", "end"]
    missing = await http.get("/api/jobs/nope/events", headers=auth())
    assert missing.status_code == 404


async def test_rar_output_without_the_encoder_is_415_saying_so(http: httpx.AsyncClient) -> None:
    response = await create_job(http, ["pillow/hopper.png"], {"format": "rar"})
    assert response.status_code == 415
    assert "RAR creation needs the proprietary rar encoder" in response.json()["error"]


async def test_internal_callback_url_is_a_400_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await create_job(
        http,
        ["pillow/hopper.png"],
        {"format": "jpg", "callbackUrl": "http://127.0.0.1:9/hook", "callbackSecret": "s"},
    )
    assert response.status_code == 400
    assert "callbackUrl" in body_fields(response)
    assert "127.0.0.1" not in response.json()["error"]


async def test_metrics_count_requests_by_route_template(
    http: httpx.AsyncClient, mesh: LocalMesh
) -> None:
    await http.get("/api/jobs/3c90c3cc-0d44-4b50-8888-8dd25736052a", headers=auth())
    assert (await http.get("/metrics")).status_code == 404  # never on the public port
    port = mesh.config.metrics_ports["gateway"]
    async with httpx.AsyncClient() as scraper:
        response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert any(
        line.startswith("convertmesh_http_requests_total{")
        and 'route="/api/jobs/{job_id}"' in line
        and 'status="404"' in line
        for line in lines
    )
    assert not any("3c90c3cc" in line for line in lines)


async def test_downloads_serve_byte_ranges_and_honour_etags(http: httpx.AsyncClient) -> None:
    body = (await create_job(http, ["exif-orientation-examples/Landscape_2.jpg"], SEED)).json()
    job = await wait_for_job(http, body["jobId"])
    url = job["results"]["files"][0]["downloadUrl"]
    whole = await http.get(url, headers=auth())
    assert whole.headers["accept-ranges"] == "bytes"
    data = whole.content
    size = len(data)
    cases = {
        "bytes=0-99": (0, 99),
        f"bytes={size - 10}-": (size - 10, size - 1),
        "bytes=-300000": (size - 300000, size - 1),
        f"bytes=1000-{size + 50}": (1000, size - 1),
    }
    for header, (first, last) in cases.items():
        part = await http.get(url, headers={**auth(), "Range": header})
        assert part.status_code == 206, header
        assert part.content == data[first : last + 1], header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert int(part.headers["content-length"]) == last - first + 1
    beyond = await http.get(url, headers={**auth(), "Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.json()["code"] == "RANGE_NOT_SATISFIABLE"
    several = await http.get(url, headers={**auth(), "Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data
    cached = await http.get(url, headers={**auth(), "If-None-Match": whole.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    changed = await http.get(url, headers={**auth(), "If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == data


async def test_too_many_unfinished_jobs_is_429_with_retry_after(
    http: httpx.AsyncClient, mesh: LocalMesh
) -> None:
    image_worker = mesh.processes["image"]
    image_worker.send_signal(signal.SIGSTOP)
    accepted: list[str] = []
    try:
        for _ in range(MAX_ACTIVE_JOBS + 1):
            response = await create_job(
                http, ["small/png-transparent.png"], {"format": "gif"}, tenant="initech"
            )
            if response.status_code != 200:
                break
            accepted.append(response.json()["jobId"])
    finally:
        image_worker.send_signal(signal.SIGCONT)
    assert len(accepted) == MAX_ACTIVE_JOBS
    assert response.status_code == 429
    assert response.headers["retry-after"].isdigit()
    assert response.json()["code"] == "RATE_LIMITED"
    for job_id in accepted:
        assert (await wait_for_job(http, job_id, tenant="initech"))["status"] == "completed"
    again = await create_job(http, ["small/png-transparent.png"], {"format": "gif"}, "initech")
    assert again.status_code == 200
