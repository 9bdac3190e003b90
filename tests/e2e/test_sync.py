"""POST /api/convert and /api/compress: the same mesh, answered inside the request."""

from __future__ import annotations

import base64
import io
import os

import httpx
from PIL import Image

from tests.corpus import CORPUS
from tests.e2e.conftest import SYNC_MAX_BYTES, auth


def decode_data_url(url: str) -> tuple[str, bytes]:
    prefix, _, payload = url.partition(",")
    assert prefix.startswith("data:") and prefix.endswith(";base64")
    return prefix[5:-7], base64.b64decode(payload, validate=True)


async def test_convert_answers_with_data_urls(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/convert",
        headers=auth(),
        data={"formats": '["webp", "png"]', "resize": "email"},
        files=[
            (
                "files",
                (
                    "a.jpg",
                    (CORPUS / "exif-orientation-examples/Landscape_8.jpg").read_bytes(),
                    "image/jpeg",
                ),
            ),
            ("files", ("b.png", (CORPUS / "pillow/hopper.png").read_bytes(), "image/png")),
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["storage"] == {"saved": False}
    first, second = body["files"]
    mime, data = decode_data_url(first["downloadUrl"])
    assert (mime, first["mimeType"], first["finalSize"]) == ("image/webp", "image/webp", len(data))
    assert Image.open(io.BytesIO(data)).size == (600, 400)
    mime, data = decode_data_url(second["downloadUrl"])
    assert mime == "image/png" and Image.open(io.BytesIO(data)).format == "PNG"


async def test_convert_with_octet_stream_answers_the_bytes(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/convert",
        headers={**auth(), "Accept": "application/octet-stream"},
        data={"format": "jpg"},
        files=[("file", ("h.png", (CORPUS / "pillow/hopper.png").read_bytes(), "image/png"))],
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


async def test_compress_keeps_the_format(http: httpx.AsyncClient) -> None:
    original = (CORPUS / "exif-orientation-examples/Landscape_1.jpg").read_bytes()
    response = await http.post(
        "/api/compress",
        headers=auth(),
        data={"quality": "40"},
        files=[("files", ("a.jpg", original, "image/jpeg"))],
    )
    assert response.status_code == 200, response.text
    item = response.json()["files"][0]
    mime, data = decode_data_url(item["downloadUrl"])
    assert mime == "image/jpeg"
    assert len(data) < len(original)
    assert item["appliedQuality"] == 40 and item["savedPercent"] > 0


async def test_sync_failure_and_size_budget_are_typed_errors(http: httpx.AsyncClient) -> None:
    broken = await http.post(
        "/api/convert",
        headers=auth(),
        data={"format": "png"},
        files=[("files", ("b.png", (CORPUS / "pillow/broken.png").read_bytes(), "image/png"))],
    )
    assert broken.status_code == 422
    assert broken.json()["code"] == "CORRUPT_INPUT"
    too_big = await http.post(
        "/api/convert",
        headers=auth(),
        data={"format": "png"},
        files=[("files", ("big.jpg", b"\xff\xd8\xff" + os.urandom(SYNC_MAX_BYTES), "image/jpeg"))],
    )
    assert too_big.status_code == 413
    assert "/api/jobs" in too_big.json()["error"]
