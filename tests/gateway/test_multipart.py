from __future__ import annotations

import hashlib
import os

import pytest

from mesh.errors import MeshError, Reason
from services.gateway import multipart
from services.gateway.forms import parse_job_form
from services.gateway.multipart import FormLimits, ParsedForm
from tests.clients import Form, FormPart, body_fields, curl_form
from tests.gateway.conftest import (
    CLOSING,
    FormApp,
    MemoryBlobs,
    chunked,
    field_part,
    file_part,
    identity,
    multipart_body,
    parsed,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_multi_megabyte_file_reaches_the_upload_intact() -> None:
    data = PNG_MAGIC + os.urandom(5 * 1024 * 1024)
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity)
    body = multipart_body([field_part("jobType", "convert"), file_part("files", data, "big.png")])

    response = await app.post(chunked(body))

    assert response.status_code == 200, response.text
    (uploaded,) = parsed(app).files
    assert uploaded.size == len(data)
    assert blobs.digests[uploaded.blob_id] == hashlib.sha256(data).hexdigest()
    assert (uploaded.detected_format, uploaded.family) == ("png", "image")
    assert parsed(app).fields == {"jobType": ["convert"]}


async def test_every_file_part_name_is_accepted_in_order_and_others_are_ignored() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity)
    names = ["files", "files[]", "files[0]", "file"]
    parts = [
        file_part(name, f"content {name}".encode(), f"{index}.txt")
        for index, name in enumerate(names)
    ]
    parts.insert(2, file_part("attachment", b"not a job file", "x.txt"))

    response = await app.post(multipart_body(parts))

    assert response.status_code == 200, response.text
    form = parsed(app)
    assert [uploaded.field for uploaded in form.files] == names
    assert [uploaded.filename for uploaded in form.files] == ["0.txt", "1.txt", "2.txt", "3.txt"]
    assert blobs.uploads_started == 4


async def test_the_seed_pages_files_items_part_names_carry_files() -> None:
    """Convertly's reference page shows `--form files.items='@example-file'`."""
    app = FormApp(MemoryBlobs(), identity)
    form = curl_form(
        ("format", "jpg"),
        ("resize", "original"),
        files=[("files.items", "photo.png", PNG_MAGIC), ("files.items[1]", "b.png", PNG_MAGIC)],
    )

    response = await app.post(form.body, **{"content-type": form.content_type})

    assert response.status_code == 200, response.text
    assert [f.field for f in parsed(app).files] == ["files.items", "files.items[1]"]
    assert [f.filename for f in parsed(app).files] == ["photo.png", "b.png"]


@pytest.mark.parametrize(
    ("tail", "name"),
    [
        ("; filename*=UTF-8''%E2%82%AC%20rates.png", "€ rates.png"),
        ("; filename*=\"UTF-8''na%C3%AFve.png\"", "naïve.png"),
        ("; filename*=iso-8859-1'en'%E9t%E9.png", "été.png"),
        ("; filename=\"fallback.png\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.png", "日本.png"),
    ],
)
async def test_rfc_5987_filenames_are_decoded(tail: str, name: str) -> None:
    app = FormApp(MemoryBlobs(), identity)
    form = Form("b0undary", (FormPart("files", PNG_MAGIC, disposition_tail=tail),))

    response = await app.post(form.body, **{"content-type": form.content_type})

    assert response.status_code == 200, response.text
    (uploaded,) = parsed(app).files
    assert uploaded.filename == name
    assert uploaded.size == len(PNG_MAGIC)


async def test_fields_after_files_and_repeated_fields_are_kept() -> None:
    app = FormApp(MemoryBlobs(), identity)
    parts = [
        file_part("files", b"abc", "a.txt"),
        field_part("format", "png"),
        field_part("format", "webp"),
        field_part("note", "héllo ☃"),
    ]

    response = await app.post(multipart_body(parts))

    assert response.status_code == 200, response.text
    form = parsed(app)
    assert form.fields == {"format": ["png", "webp"], "note": ["héllo ☃"]}
    assert form.last("format") == "webp"
    assert form.files[0].size == 3


async def test_client_filenames_are_sanitised_before_the_upload_sees_them() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity)
    hostile = "../../etc/pass\x00wd\u202egnp.exe".encode()
    parts = [
        file_part("files", b"1", hostile, "image/png; charset=x"),
        file_part("files", b"2", "résumé 日本.png", "text/plain\x01evil"),
        file_part("files", b"3", "C:\\Users\\me\\photo.jpg"),
    ]

    response = await app.post(multipart_body(parts))

    assert response.status_code == 200, response.text
    files = parsed(app).files
    assert [f.filename for f in files] == ["passwdgnp.exe", "résumé 日本.png", "photo.jpg"]
    assert [f.content_type for f in files] == [
        "image/png",
        "application/octet-stream",
        "application/octet-stream",
    ]
    assert blobs.names[files[0].blob_id] == ("passwdgnp.exe", "image/png")


async def test_wrong_content_type_is_an_invalid_field() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(b"format=png", **{"content-type": "text/plain"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_FIELD"
    assert "Content-Type" in body_fields(response)


async def test_a_body_without_files_may_be_json_or_url_encoded() -> None:
    app = FormApp(MemoryBlobs(), identity)
    body = b'{"sourceUrl": "https://example.test/a.png", "lossless": true, "formats": ["png"]}'
    assert (await app.post(body, **{"content-type": "application/json"})).status_code == 200
    encoded = b"sourceUrl=https%3A%2F%2Fexample.test%2Fa.png&format=webp&format=png"
    response = await app.post(encoded, **{"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    as_json, as_form = app.results
    assert as_json.fields == {
        "sourceUrl": ["https://example.test/a.png"],
        "lossless": ["true"],
        "formats": ['["png"]'],
    }
    assert as_form.fields == {
        "sourceUrl": ["https://example.test/a.png"],
        "format": ["webp", "png"],
    }
    assert as_form.given("format") == "png" and as_json.files == as_form.files == ()


async def test_a_json_body_that_is_not_an_object_is_refused() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(b"[1, 2]", **{"content-type": "application/json"})
    assert response.status_code == 400 and "body" in body_fields(response)


async def test_multipart_without_boundary_is_an_invalid_field() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(b"", **{"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert "Content-Type" in body_fields(response)


async def test_garbage_body_is_malformed() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(b"this is not a multipart body at all")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_FIELD"
    assert "body" in body_fields(response)


async def test_part_without_name_is_malformed() -> None:
    app = FormApp(MemoryBlobs(), identity)
    body = multipart_body([field_part("x", "1")]).replace(b' name="x"', b"")
    response = await app.post(body)
    assert response.status_code == 400
    assert "body" in body_fields(response)


async def test_truncated_body_discards_the_completed_upload_and_stops_the_open_one() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity)
    body = multipart_body([file_part("files", b"first"), file_part("files", b"second" * 1000)])

    response = await app.post(body[: -len(CLOSING) - 100])

    assert response.status_code == 400
    assert body_fields(response)["body"].startswith("the body ended")
    assert len(blobs.digests) == 1
    assert blobs.kept == set()
    assert app.results == []


async def test_non_utf8_text_field_is_named() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(
        multipart_body(
            [
                field_part("format", "x"),
            ]
        ).replace(b"\r\n\r\nx", b"\r\n\r\n\xff")
    )
    assert response.status_code == 400
    assert body_fields(response) == {"format": "must be UTF-8 text"}


async def test_file_over_the_per_file_limit_is_too_large_and_nothing_is_kept() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity, FormLimits(max_file_bytes=1000))
    body = multipart_body([file_part("files", b"a" * 1000), file_part("files", b"b" * 5000)])

    response = await app.post(chunked(body, 512))

    assert response.status_code == 413
    assert response.json()["code"] == "TOO_LARGE"
    assert response.json()["meta"] == {"limit": "maxFileBytes", "max": 1000}
    assert len(blobs.digests) == 1  # the second upload was cancelled, never stored
    assert blobs.kept == set()


async def test_streamed_body_over_the_total_limit_is_too_large() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity, FormLimits(max_body_bytes=10_000))
    body = multipart_body([file_part("files", b"a" * 4000), file_part("files", b"b" * 8000)])

    response = await app.post(chunked(body, 1024))

    assert response.status_code == 413
    assert response.json()["meta"]["limit"] == "maxBodyBytes"
    assert len(blobs.digests) == 1
    assert blobs.kept == set()


async def test_declared_length_over_the_total_limit_is_refused_before_any_upload() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity, FormLimits(max_body_bytes=100))
    response = await app.post(multipart_body([file_part("files", b"a" * 1000)]))
    assert response.status_code == 413
    assert response.json()["meta"]["limit"] == "maxBodyBytes"
    assert blobs.uploads_started == 0


async def test_too_many_files_is_too_large_and_earlier_uploads_are_discarded() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity, FormLimits(max_files=2))
    response = await app.post(multipart_body([file_part("files", b"x")] * 3))
    assert response.status_code == 413
    assert response.json()["meta"] == {"limit": "maxFiles", "max": 2}
    assert len(blobs.discarded) == 2
    assert blobs.kept == set()


async def test_oversized_text_field_is_too_large() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(multipart_body([field_part("formats", "x" * (64 * 1024 + 1))]))
    assert response.status_code == 413
    assert response.json()["meta"]["limit"] == "maxFieldBytes"


async def test_too_many_text_fields_is_too_large() -> None:
    app = FormApp(MemoryBlobs(), identity, FormLimits(max_fields=3))
    response = await app.post(multipart_body([field_part(f"f{i}", "1") for i in range(4)]))
    assert response.status_code == 413
    assert response.json()["meta"] == {"limit": "maxFields", "max": 3}


async def test_file_parts_under_other_names_count_as_fields() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity, FormLimits(max_fields=3))
    response = await app.post(multipart_body([file_part(f"other{i}", b"x") for i in range(4)]))
    assert response.status_code == 413
    assert response.json()["meta"] == {"limit": "maxFields", "max": 3}
    assert blobs.digests == {}


async def test_validation_failure_discards_every_upload() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, parse_job_form)
    parts = [file_part("files", b"1"), file_part("files", b"2"), field_part("format", "bogus")]

    response = await app.post(multipart_body(parts))

    assert response.status_code == 400
    assert "format" in body_fields(response)
    assert len(blobs.digests) == 2
    assert blobs.kept == set()


async def test_empty_file_input_is_no_file_but_a_named_empty_file_is_uploaded() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, identity)
    parts = [file_part("files", b"", ""), file_part("files", b"", "empty.txt")]

    response = await app.post(multipart_body(parts))

    assert response.status_code == 200, response.text
    (uploaded,) = parsed(app).files
    assert (uploaded.filename, uploaded.size) == ("empty.txt", 0)
    assert blobs.uploads_started == 1


async def test_unnamed_file_with_bytes_is_uploaded_under_the_fallback_name() -> None:
    app = FormApp(MemoryBlobs(), identity)
    response = await app.post(multipart_body([file_part("file", b"data", "")]))
    assert response.status_code == 200, response.text
    assert [f.filename for f in parsed(app).files] == ["file"]


def test_empty_values_count_as_absent_and_the_last_value_wins() -> None:
    parsed = ParsedForm({"format": ["jpg", "png"], "resize": ["  "]}, ())
    assert parsed.given("format") == "png"
    assert parsed.given("resize") is None
    assert parsed.given("missing") is None


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b'"text"', b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_a_400_naming_the_body(raw: bytes) -> None:
    with pytest.raises(MeshError) as refused:
        multipart.json_object(raw)
    assert refused.value.reason is Reason.INVALID_FIELD
    assert refused.value.detail["fields"] == {"body": "must be a JSON object"}


def test_a_json_object_body_is_returned_as_it_is() -> None:
    assert multipart.json_object(b'{"url": "http://127.0.0.1/x", "n": 1}') == {
        "url": "http://127.0.0.1/x",
        "n": 1,
    }
