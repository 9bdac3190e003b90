"""Issue 15: Convertly clients drop in. Each request is built as that client builds it (curl's
`-F` forms, the JS SDK's FormData, the PHP client's `files[N]` parts, see tests/clients.py),
sent through the real mesh, and its answer read the way the client reads it. Outputs are
checked with tools other than the ones that made them (Pillow, ffprobe, bsdtar, unzip)."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from launcher.mesh import LocalMesh
from mesh.links import LinkSigner
from tests.clients import Form, FormPart, body_fields, curl_form, js_sdk_form, php_client_form
from tests.corpus import CORPUS
from tests.e2e.conftest import (
    BROWSER_ORIGIN,
    LINK_KEY,
    OLD_LINK_KEY,
    auth,
    wait_for_job,
)
from tests.e2e.test_sync import decode_data_url

LANDSCAPE = CORPUS / "exif-orientation-examples/Landscape_1.jpg"
HOPPER_JPG = CORPUS / "pillow/hopper.jpg"
HOPPER_PNG = CORPUS / "pillow/hopper.png"


async def _post(
    http: httpx.AsyncClient, path: str, form: Form, tenant: str = "acme", **headers: str
) -> httpx.Response:
    return await http.post(path, content=form.body, headers=form.headers(**auth(tenant), **headers))


async def _job(http: httpx.AsyncClient, form: Form, **headers: str) -> dict[str, Any]:
    created = await _post(http, "/api/jobs", form, **headers)
    assert created.status_code == 200, created.text
    job = await wait_for_job(http, created.json()["jobId"], within=180)
    return job


def _ffprobe(data: bytes, tmp_path: Path, name: str) -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    )
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def _streams(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def _listing(tool: list[str], data: bytes, tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    listed = subprocess.run([*tool, str(path)], capture_output=True, check=True, timeout=30)
    return listed.stdout.decode().splitlines()


# 1. The seed page's curl


@pytest.mark.parametrize("part", ["files.items", "files.items[0]"])
async def test_the_seed_pages_curl_creates_the_job(http: httpx.AsyncClient, part: str) -> None:
    form = curl_form(
        ("format", "jpg"),
        ("resize", "original"),
        files=[(part, "photo.jpg", LANDSCAPE.read_bytes())],
    )
    job = await _job(http, form)
    assert job["status"] == "completed", job
    (item,) = job["results"]["files"]
    assert (item["filename"], item["originalFilename"]) == ("photo.jpg", "photo.jpg")
    download = await http.get(item["downloadUrl"])
    assert Image.open(io.BytesIO(download.content)).size == (1800, 1200)


# 2. Compress never hands back a larger file


async def test_compressing_the_issue_photo_saves_bytes(http: httpx.AsyncClient) -> None:
    original = LANDSCAPE.read_bytes()
    form = curl_form(files=[("files", "Landscape_1.jpg", original)])
    response = await _post(http, "/api/compress", form)
    assert response.status_code == 200, response.text
    (item,) = response.json()["files"]
    mime, data = decode_data_url(item["downloadUrl"])
    assert mime == "image/jpeg" and item["keptOriginal"] is False
    assert item["finalSize"] == len(data) < item["originalSize"] == len(original)
    assert item["savedPercent"] > 0
    # Never above the source's own quality (its tables say about 73).
    assert item["appliedQuality"] is not None and item["appliedQuality"] <= 82
    assert Image.open(io.BytesIO(data)).size == (1800, 1200)


@pytest.mark.parametrize(
    "relative", ["pillow/pil123p.png", "small/jpeg.jpg", "small/gif-transparent.gif"]
)
async def test_a_file_compress_cannot_shrink_comes_back_unchanged(
    http: httpx.AsyncClient, relative: str
) -> None:
    original = (CORPUS / relative).read_bytes()
    form = js_sdk_form([(Path(relative).name, original)])
    response = await _post(http, "/api/compress", form)
    assert response.status_code == 200, response.text
    (item,) = response.json()["files"]
    _, data = decode_data_url(item["downloadUrl"])
    assert data == original
    assert (item["savedPercent"], item["keptOriginal"], item["appliedQuality"]) == (0, True, None)


async def test_compress_jobs_shrink_video_and_never_grow_audio(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    sources = {
        name: (CORPUS / "go-mediainfo" / name).read_bytes()
        for name in ("sample.mp4", "sample.flac", "sample.wav")
    }
    form = js_sdk_form(list(sources.items()), ("jobType", "compress"))
    job = await _job(http, form)
    assert job["status"] == "completed", job
    items = {item["originalFilename"]: item for item in job["results"]["files"]}
    video = items["sample.mp4"]
    assert video["savedPercent"] > 0 and video["appliedQuality"] is not None
    assert video["filename"] == "sample.mp4" and video["mimeType"] == "video/mp4"
    for item in items.values():
        assert item["savedPercent"] >= 0 and item["finalSize"] <= item["originalSize"]
        data = (await http.get(item["downloadUrl"])).content
        info = _ffprobe(data, tmp_path, item["filename"])
        assert _streams(info, "audio"), info
    assert items["sample.wav"]["keptOriginal"] is True


# 3. `filename` is the output's name


async def test_results_are_named_for_their_output(http: httpx.AsyncClient) -> None:
    form = js_sdk_form([("hopper.jpg", HOPPER_JPG.read_bytes())], ("format", "webp"))
    job = await _job(http, form)
    (item,) = job["results"]["files"]
    assert (item["filename"], item["originalFilename"], item["mimeType"]) == (
        "hopper.webp",
        "hopper.jpg",
        "image/webp",
    )
    download = await http.get(item["downloadUrl"])
    assert 'filename="hopper.webp"' in download.headers["content-disposition"]
    sync = await _post(http, "/api/convert", form)
    (converted,) = sync.json()["files"]
    assert (converted["filename"], converted["originalFilename"]) == ("hopper.webp", "hopper.jpg")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_a_zip_asked_for_gz_is_a_named_tar_gz_or_a_single_stream(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    several = _zip({"a.txt": b"alpha\n", "b/c.txt": b"gamma\n"})
    one = _zip({"report.txt": b"only\n"})
    form = php_client_form([("my.zip", several), ("one.zip", one)], ("format", "gz"))
    job = await _job(http, form)
    first, second = job["results"]["files"]
    assert first["filename"] == "my.tar.gz"
    data = (await http.get(first["downloadUrl"])).content
    assert _listing(["bsdtar", "-tzf"], data, tmp_path, "my.tar.gz") == ["a.txt", "b/c.txt"]
    assert second["filename"] == "report.txt.gz"
    data = (await http.get(second["downloadUrl"])).content
    assert _listing(["gzip", "-dc"], data, tmp_path, "report.txt.gz") == ["only"]


async def test_the_conversion_report_names_entries_as_stored(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    pictures = _zip({"hopper.jpg": HOPPER_JPG.read_bytes(), "hopper.png": HOPPER_PNG.read_bytes()})
    job = await _job(http, curl_form(("format", "webp"), files=[("files", "pics.zip", pictures)]))
    (item,) = job["results"]["files"]
    assert item["filename"] == "pics.zip"
    outputs = [entry["outputName"] for entry in item["entries"]]
    assert outputs == ["hopper.webp", "hopper (2).webp"]
    data = (await http.get(item["downloadUrl"])).content
    stored = _listing(["bsdtar", "-tf"], data, tmp_path, "pics.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        report = json.loads(archive.read("conversion-report.json"))
    assert [entry["output"] for entry in report["entries"]] == outputs
    assert set(outputs) <= set(stored)


# 5. Error bodies the PHP client can print


async def test_error_detail_is_a_string_and_fields_are_listed(http: httpx.AsyncClient) -> None:
    form = php_client_form(
        [("a.png", HOPPER_PNG.read_bytes()), ("b.jpg", HOPPER_JPG.read_bytes())],
        ("formats", '["png"]'),
        ("resize", "huge"),
    )
    response = await _post(http, "/api/jobs", form)
    assert response.status_code == 400
    body = response.json()
    fields = body_fields(response)
    assert set(fields) == {"formats", "resize"}
    assert body["detail"] == "; ".join(f"{k}: {v}" for k, v in fields.items()) + "."
    assert body["meta"] == {}


async def test_every_error_has_string_detail_and_object_meta(http: httpx.AsyncClient) -> None:
    audio = (CORPUS / "go-mediainfo/sample.mp3").read_bytes()
    responses = [
        await _post(http, "/api/jobs", php_client_form([("a.mp3", audio)], ("format", "png"))),
        await http.get("/api/jobs/5a0c6f0e-8d1b-4c36-9e0f-2f1d7b9c1a11", headers=auth()),
        await http.get("/api/jobs"),
    ]
    assert [r.status_code for r in responses] == [415, 404, 401]
    for response in responses:
        body = response.json()
        assert set(body) == {"error", "code", "detail", "fields", "meta"}
        assert isinstance(body["detail"], str) and isinstance(body["meta"], dict)
    assert responses[0].json()["meta"]["files"] == {"0": "Converting mp3 to png is not supported."}


# 6. Signed download links


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


async def test_download_urls_work_without_the_key_and_refuse_tampering(
    http: httpx.AsyncClient, mesh: LocalMesh
) -> None:
    form = js_sdk_form(
        [("hopper.jpg", HOPPER_JPG.read_bytes())], ("format", "png"), ("createArchive", "true")
    )
    job = await _job(http, form)
    url = job["results"]["files"][0]["downloadUrl"]
    assert set(parse_qs(urlsplit(url).query)) == {"expires", "signature"}
    async with httpx.AsyncClient(timeout=30) as plain:  # what an <img> or a browser does
        image = await plain.get(url)
        archive = await plain.get(job["results"]["archive"]["downloadUrl"])
        tampered = await plain.get(url.replace("/files/0", "/files/1"))
        stretched = await plain.get(_with_query(url, expires="99999999999"))
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).format == "PNG"
    assert archive.status_code == 200 and zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    for refused in (tampered, stretched):
        assert refused.status_code == 403
        assert refused.json()["code"] == "LINK_INVALID"
    listed = (await http.get("/api/jobs", headers=auth())).json()["jobs"]
    shown = next(j for j in listed if j["jobId"] == job["jobId"])
    assert "signature=" in shown["results"]["files"][0]["downloadUrl"]
    unsigned = urlsplit(url)._replace(query="").geturl()
    assert (await http.get(unsigned, headers=auth())).status_code == 200


async def test_links_of_the_previous_key_still_work_and_old_links_expire(
    http: httpx.AsyncClient,
) -> None:
    job = await _job(
        http, curl_form(("format", "png"), files=[("files", "h.jpg", HOPPER_JPG.read_bytes())])
    )
    base = job["results"]["files"][0]["downloadUrl"].split("/api/", 1)[0]
    path = f"/api/jobs/{job['jobId']}/files/0"
    async with httpx.AsyncClient(timeout=30) as plain:
        rotated = await plain.get(base + LinkSigner((OLD_LINK_KEY,)).sign("acme", path))
        expired = await plain.get(base + LinkSigner((LINK_KEY,)).sign("acme", path, now=1e9))
        other_tenant = await plain.get(base + LinkSigner((LINK_KEY,)).sign("globex", path))
    assert rotated.status_code == 200
    assert expired.status_code == 403 and expired.json()["code"] == "LINK_EXPIRED"
    assert other_tenant.status_code == 404  # a valid link of globex: globex has no such job


async def test_event_stream_download_urls_are_signed(http: httpx.AsyncClient) -> None:
    created = await _post(
        http, "/api/jobs", js_sdk_form([("h.jpg", HOPPER_JPG.read_bytes())], ("format", "png"))
    )
    job_id = created.json()["jobId"]
    urls = []
    async with http.stream("GET", f"/api/jobs/{job_id}/events", headers=auth()) as events:
        async for line in events.aiter_lines():
            if line.startswith("data: ") and "downloadUrl" in line:
                data = json.loads(line[6:])
                files = data.get("results", {}).get("files", [data])
                urls += [f["downloadUrl"] for f in files if f.get("downloadUrl")]
            if line == "event: end":
                break
    assert urls and all("signature=" in url for url in urls)
    async with httpx.AsyncClient(timeout=30) as plain:
        assert (await plain.get(urls[-1])).status_code == 200


# 7. Browsers on another origin


async def test_a_browser_on_an_allowed_origin_may_read_the_answer(
    http: httpx.AsyncClient,
) -> None:
    preflight = await http.options(
        "/api/jobs",
        headers={
            "Origin": BROWSER_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == BROWSER_ORIGIN
    listed = await http.get("/api/jobs", headers={**auth(), "Origin": BROWSER_ORIGIN})
    assert listed.headers["access-control-allow-origin"] == BROWSER_ORIGIN
    wrong = await http.put("/api/jobs", headers=auth())
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, HEAD, POST")
    assert wrong.json()["code"] == "METHOD_NOT_ALLOWED"


# 8. The smaller traps


async def test_an_idempotent_replay_answers_the_first_answer_exactly(
    http: httpx.AsyncClient,
) -> None:
    form = js_sdk_form([("h.jpg", HOPPER_JPG.read_bytes())], ("format", "png"), ("colour", "red"))
    first = await _post(http, "/api/jobs", form, **{"Idempotency-Key": "drop-in-replay-1"})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    await wait_for_job(http, first.json()["jobId"])
    again = await _post(http, "/api/jobs", form, **{"Idempotency-Key": "drop-in-replay-1"})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert first.json()["status"] == "pending"


async def test_a_misspelt_field_is_refused_and_unknown_ones_are_listed(
    http: httpx.AsyncClient,
) -> None:
    image = [("h.jpg", HOPPER_JPG.read_bytes())]
    misspelt = await _post(http, "/api/jobs", js_sdk_form(image, ("jobtype", "compress")))
    assert misspelt.status_code == 400
    assert body_fields(misspelt) == {"jobtype": "is not a field; did you mean 'jobType'?"}
    unknown = await _post(
        http, "/api/jobs", js_sdk_form(image, ("format", "png"), ("colour", "red"))
    )
    assert unknown.status_code == 200
    assert unknown.json()["warnings"] == [
        "The field 'colour' is not read by POST /api/jobs and was ignored."
    ]


async def test_save_to_storage_on_sync_convert_is_noticed(http: httpx.AsyncClient) -> None:
    form = curl_form(
        ("format", "png"),
        ("saveToStorage", "true"),
        files=[("files", "h.jpg", HOPPER_JPG.read_bytes())],
    )
    response = await _post(http, "/api/convert", form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["storage"] == {"saved": False}
    (warning,) = body["warnings"]
    assert "saveToStorage" in warning and "POST /api/jobs" in warning


async def test_an_empty_upload_is_called_empty(http: httpx.AsyncClient) -> None:
    form = curl_form(("format", "png"), files=[("files", "blank.jpg", b"")])
    response = await _post(http, "/api/jobs", form)
    assert response.status_code == 400
    assert body_fields(response) == {"files": "holds an empty file (0 bytes): 'blank.jpg'"}


async def test_an_rfc_5987_file_name_is_decoded(http: httpx.AsyncClient) -> None:
    part = FormPart(
        "files",
        HOPPER_PNG.read_bytes(),
        content_type="image/png",
        disposition_tail="; filename*=UTF-8''%E2%82%AC%20rates.png",
    )
    form = Form("rfc5987", (FormPart("format", b"jpg"), part))
    job = await _job(http, form)
    (item,) = job["results"]["files"]
    assert (item["originalFilename"], item["filename"]) == ("€ rates.png", "€ rates.jpg")
    download = await http.get(item["downloadUrl"])
    assert "filename*=UTF-8''%E2%82%AC%20rates.jpg" in download.headers["content-disposition"]


async def test_a_range_past_the_end_is_416_with_the_size(http: httpx.AsyncClient) -> None:
    job = await _job(http, js_sdk_form([("h.jpg", HOPPER_JPG.read_bytes())], ("format", "png")))
    (item,) = job["results"]["files"]
    response = await http.get(item["downloadUrl"], headers={"Range": "bytes=99999999-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{item['finalSize']}"


async def test_downloading_a_failed_file_says_it_failed(http: httpx.AsyncClient) -> None:
    broken = (CORPUS / "pillow/broken.png").read_bytes()
    form = js_sdk_form(
        [("ok.jpg", HOPPER_JPG.read_bytes()), ("broken.png", broken)], ("format", "webp")
    )
    job = await _job(http, form)
    assert job["status"] == "completed" and job["failedFiles"] == 1
    response = await http.get(f"/api/jobs/{job['jobId']}/files/1", headers=auth())
    assert response.status_code == 409
    message = response.json()["error"]
    assert "failed" in message and "CORRUPT_INPUT" in message and "yet" not in message


async def test_mp3_audio_is_never_copied_into_mp4(http: httpx.AsyncClient, tmp_path: Path) -> None:
    source = CORPUS / "go-mediainfo/sample.avi"  # MPEG-4 Part 2 video with MP3 audio
    job = await _job(
        http, curl_form(("format", "mp4"), files=[("files", source.name, source.read_bytes())])
    )
    assert job["status"] == "completed", job
    (item,) = job["results"]["files"]
    assert item["filename"] == "sample.mp4"
    info = _ffprobe((await http.get(item["downloadUrl"])).content, tmp_path, "sample.mp4")
    (video,) = _streams(info, "video")
    (audio,) = _streams(info, "audio")
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert audio["codec_name"] == "aac"


async def test_a_zip_with_unicode_path_extra_fields_is_read(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    source = CORPUS / "libarchive/test_read_format_zip_7075_utf8_paths.zip"
    job = await _job(
        http, curl_form(("format", "zip"), files=[("files", source.name, source.read_bytes())])
    )
    assert job["status"] == "completed", job
    data = (await http.get(job["results"]["files"][0]["downloadUrl"])).content
    names = _listing(["unzip", "-Z1"], data, tmp_path, "out.zip")
    assert names == ["File 1.txt", "File 2 - ö.txt", "File 3 - ä.txt", "File 4 - å.txt"]
