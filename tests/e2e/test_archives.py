"""Archives through the mesh: an archive converted member by member by the right workers, and
a job's createArchive zip."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
from PIL import Image

from tests.corpus import CORPUS
from tests.e2e.conftest import auth, wait_for_job

PHOTOS = [
    "exif-orientation-examples/Landscape_1.jpg",
    "exif-orientation-examples/Portrait_6.jpg",
    "pillow/hopper.png",
    "pillow/hopper.webp",
    "pillow/hopper.bmp",
]


def photo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, photo in enumerate(PHOTOS):
            folder = "trip/day1" if number < 2 else "portraits"
            archive.write(CORPUS / photo, f"{folder}/{(CORPUS / photo).name}")
        archive.write(CORPUS / "go-mediainfo/sample.wav", "audio/sample.wav")
    return buffer.getvalue()


async def test_zip_of_photos_and_a_wav_becomes_a_zip_of_webps_and_a_report(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"format": "webp"},
        files=[("files", ("holiday.zip", photo_zip(), "application/zip"))],
    )
    assert response.status_code == 200, response.text
    job = await wait_for_job(http, response.json()["jobId"], within=180)
    assert job["status"] == "completed", job
    item = job["results"]["files"][0]
    assert item["mimeType"] == "application/zip"
    assert item["filename"] == "holiday.zip"
    statuses = {e["name"]: e["status"] for e in item["entries"]}
    assert statuses.pop("audio/sample.wav") == "failed"
    assert set(statuses.values()) == {"completed"} and len(statuses) == 5

    download = await http.get(item["downloadUrl"], headers=auth())
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith('attachment; filename="holiday.zip"')
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = sorted(archive.namelist())
        webps = [n for n in names if n.endswith(".webp")]
        assert len(webps) == 5
        assert "trip/day1/Landscape_1.webp" in webps and "portraits/hopper.webp" in webps
        for name in webps:
            assert Image.open(io.BytesIO(archive.read(name))).format == "WEBP"
        upright = Image.open(io.BytesIO(archive.read("trip/day1/Portrait_6.webp")))
        assert upright.size == (1200, 1800)
        report = json.loads(archive.read("conversion-report.json"))
    skipped = [e for e in report["entries"] if e["status"] == "skipped"]
    assert [e["name"] for e in skipped] == ["audio/sample.wav"]
    assert "wav" in skipped[0]["reason"] and "webp" in skipped[0]["reason"]


async def test_create_archive_bundles_every_successful_output(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"format": "png", "createArchive": "true"},
        files=[
            ("files", (name, (CORPUS / path).read_bytes(), "application/octet-stream"))
            for name, path in (
                ("a.jpg", "pillow/hopper.jpg"),
                ("broken.png", "pillow/broken.png"),
                ("c.webp", "pillow/hopper.webp"),
            )
        ],
    )
    job = await wait_for_job(http, response.json()["jobId"])
    assert job["status"] == "completed"
    assert job["failedFiles"] == 1
    archive = job["results"]["archive"]
    assert archive["status"] == "completed"
    download = await http.get(archive["downloadUrl"], headers=auth())
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert int(download.headers["content-length"]) == archive["size"]
    with zipfile.ZipFile(io.BytesIO(download.content)) as bundle:
        assert sorted(bundle.namelist()) == ["a.png", "c.png"]
        assert bundle.testzip() is None
    other = await http.get(archive["downloadUrl"], headers=auth("globex"))
    assert other.status_code == 404


async def test_job_without_create_archive_has_no_archive(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/jobs",
        headers=auth(),
        data={"format": "png"},
        files=[("files", ("a.jpg", (CORPUS / "pillow/hopper.jpg").read_bytes(), "image/jpeg"))],
    )
    job = await wait_for_job(http, response.json()["jobId"])
    assert job["results"]["archive"] is None
    missing = await http.get(f"/api/jobs/{job['jobId']}/archive", headers=auth())
    assert missing.status_code == 404
