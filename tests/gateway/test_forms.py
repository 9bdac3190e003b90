from __future__ import annotations

import io

import pytest
from PIL import Image

from mesh.errors import MeshError
from mesh.formats import OUTPUT_FORMATS
from mesh.options import PRESETS, ConversionOptions, Mode
from services.gateway.forms import parse_compress_form, parse_convert_form, parse_job_form
from services.gateway.multipart import ParsedForm
from services.gateway.uploads import UploadedFile
from tests.gateway.conftest import (
    FormApp,
    MemoryBlobs,
    bad_fields,
    field_part,
    file_part,
    form,
    multipart_body,
    options_of,
    uploaded,
)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_seed_curl_request_parses_to_the_job_it_describes() -> None:
    blobs = MemoryBlobs()
    app = FormApp(blobs, parse_job_form)
    image = png_bytes()
    parts = [
        field_part("jobType", "convert"),
        field_part("saveToStorage", "true"),
        file_part("files", image, "photo.png", "image/png"),
        field_part("formats", '["jpg"]'),
        field_part("compressions", "[82]"),
        field_part("resizes", '["original"]'),
        field_part("createArchive", "false"),
    ]

    response = await app.post(multipart_body(parts))

    assert response.status_code == 200, response.text
    (job,) = app.results
    assert (job.job_type, job.create_archive, job.callback_url, job.callback_secret) == (
        "convert",
        False,
        "",
        "",
    )
    ((file, options),) = job.files
    assert options == ConversionOptions(format="jpg", resize="original", compression=82)
    assert (file.field, file.filename, file.content_type) == ("files", "photo.png", "image/png")
    assert (file.size, file.detected_format, file.family) == (len(image), "png", "image")
    assert file.blob_id in blobs.kept


def test_every_bad_field_is_reported_in_one_error() -> None:
    parsed = form(
        files=2,
        format="bogus",
        compression="101",
        resize="huge",
        autoOrient="maybe",
        createArchive="2",
        callbackUrl="ftp://example.com/hook",
        compressions='[1, "x"]',
        monos="[true]",
    )
    with pytest.raises(MeshError) as caught:
        parse_job_form(parsed)
    fields = caught.value.detail["fields"]
    assert fields == {
        "format": "must be one of " + ", ".join(OUTPUT_FORMATS),
        "compression": "must be a whole number from 1 to 100",
        "resize": "must be one of " + ", ".join(PRESETS),
        "autoOrient": "must be true or false (or 1 or 0)",
        "createArchive": "must be true or false (or 1 or 0)",
        "callbackUrl": "must be an http or https URL of at most 2048 characters",
        "compressions": "entry 2 must be a whole number from 1 to 100",
        "monos": "must have 2 entries, one per file",
    }
    assert caught.value.message.startswith("8 fields are invalid: ")
    assert all(name in caught.value.message for name in fields)
    assert caught.value.reason.http_status == 400


def test_bogus_format_is_named_with_the_valid_choices() -> None:
    with pytest.raises(MeshError) as caught:
        parse_job_form(form(format="jpegxl"))
    assert caught.value.message.startswith("The field 'format' must be one of jpg, png, webp")
    assert caught.value.detail["fields"].keys() == {"format"}


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False)]
)
def test_boolean_fields_accept_true_false_1_0(raw: str, value: bool) -> None:
    job = parse_job_form(form(format="png", createArchive=raw, mono=raw, saveToStorage=raw))
    assert job.create_archive is value
    assert options_of(job)[0].mono is value


@pytest.mark.parametrize("raw", ["yes", "2", "on", "[true]"])
def test_boolean_fields_refuse_other_words(raw: str) -> None:
    assert bad_fields(parse_job_form, form(format="png", lossless=raw)).keys() == {"lossless"}


def test_compress_job_keeps_the_input_format_and_reads_quality() -> None:
    job = parse_job_form(form(jobType="compress", quality="55"))
    assert job.job_type == "compress"
    assert options_of(job) == [ConversionOptions(format="", compression=55)]


def test_unknown_job_type_is_named_without_a_spurious_format_error() -> None:
    assert bad_fields(parse_job_form, form(jobType="zip")) == {
        "jobType": "must be one of convert, compress"
    }


def test_at_least_one_file_is_required() -> None:
    fields = bad_fields(parse_job_form, form(files=0, format="png", formats='["png"]'))
    assert fields.keys() == {"files"}


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/convert?x=1", "http://10.0.0.5:8080/cb"]
)
def test_http_callback_urls_are_accepted_as_given(url: str) -> None:
    job = parse_job_form(form(format="png", callbackUrl=url, callbackSecret="s3cret"))
    assert (job.callback_url, job.callback_secret) == (url, "s3cret")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://",
        "https://host:99999/",
        "http://a b/",
        "//host/x",
        "http://[::1/",
    ],
)
def test_other_callback_urls_are_refused(url: str) -> None:
    assert bad_fields(parse_job_form, form(format="png", callbackUrl=url)).keys() == {"callbackUrl"}


def test_unknown_fields_are_warned_about_and_save_to_storage_false_is_accepted() -> None:
    job = parse_job_form(form(format="png", saveToStorage="false", surprise="1", files_extra="x"))
    assert options_of(job) == [ConversionOptions(format="png")]
    assert job.warnings == (
        "The field 'surprise' is not read by POST /api/jobs and was ignored.",
        "The field 'files_extra' is not read by POST /api/jobs and was ignored.",
    )


def test_known_fields_draw_no_warning() -> None:
    job = parse_job_form(
        form(format="png", formats='["png"]', saveToStorage="true", createArchive="false")
    )
    assert job.warnings == ()


@pytest.mark.parametrize(
    ("sent", "meant", "others"),
    [
        # A misspelt jobType reads the options as compress: no spurious "format is required".
        ("jobtype", "jobType", {}),
        ("FORMAT", "format", {"formats": '["png"]'}),
        ("Compressions", "compressions", {"format": "png"}),
    ],
)
def test_a_field_misspelt_only_in_case_is_a_400_naming_the_right_spelling(
    sent: str, meant: str, others: dict[str, str]
) -> None:
    fields: dict[str, str | list[str]] = {sent: "compress", **others}
    assert bad_fields(parse_job_form, form(1, **fields)) == {
        sent: f"is not a field; did you mean '{meant}'?"
    }


def test_a_text_part_named_like_the_files_is_warned_about() -> None:
    parsed = ParsedForm({"format": ["png"], "files": ["<string>"]}, (uploaded(0),))
    job = parse_job_form(parsed)
    assert job.warnings == ("The part 'files' was sent as text, not as a file, and was ignored.",)


def test_an_empty_file_is_a_400_that_says_it_is_empty() -> None:
    empty = UploadedFile("files", "blank.jpg", "image/jpeg", "blob-e", 0, "", "unknown")
    parsed = ParsedForm({"format": ["png"]}, (uploaded(0), empty))
    assert bad_fields(parse_job_form, parsed) == {
        "files": "holds an empty file (0 bytes): 'blank.jpg'"
    }


def test_save_to_storage_on_the_sync_routes_is_a_warning() -> None:
    sync = parse_convert_form(form(format="png", saveToStorage="true"))
    (warning,) = sync.warnings
    assert warning.startswith("saveToStorage is not supported by POST /api/convert")
    assert "POST /api/jobs" in warning
    assert parse_compress_form(form(saveToStorage="false")).warnings == ()


def test_the_compress_route_warns_about_the_fields_it_does_not_read() -> None:
    sync = parse_compress_form(form(format="png", jobType="compress"))
    assert sync.warnings == (
        "The field 'format' is not read by POST /api/compress and was ignored.",
        "The field 'jobType' is not read by POST /api/compress and was ignored.",
    )


def test_empty_single_values_count_as_absent() -> None:
    job = parse_job_form(form(format="png", resizeWidth="", compression="", jobType=""))
    assert job.job_type == "convert"
    assert options_of(job) == [ConversionOptions(format="png")]


def test_sync_convert_form_reads_the_convert_fields() -> None:
    sync = parse_convert_form(
        form(files=2, formats='["png", "mp4"]', resize="email", createArchive="nonsense")
    )
    assert [(o.format, o.resize) for o in options_of(sync)] == [("png", "email"), ("mp4", "email")]
    assert bad_fields(parse_convert_form, form()).keys() == {"format"}


def test_sync_compress_form_keeps_the_format_and_reads_compress_fields() -> None:
    sync = parse_compress_form(
        form(
            files=2,
            format="png",
            resize="email",
            quality="60",
            modes='["quality", "target-size"]',
            targetByteValues="[null, 2048]",
            losslessValues="[true, false]",
            stripMetadata="true",
        )
    )
    assert options_of(sync) == [
        ConversionOptions(compression=60, lossless=True, strip_metadata=True),
        ConversionOptions(
            compression=60, mode=Mode.TARGET_SIZE, target_bytes=2048, strip_metadata=True
        ),
    ]
