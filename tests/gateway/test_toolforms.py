"""The media tools' forms and the transfer body: every bad field in one 400, the tool's defaults
filled in, a file or a sourceUrl (never both, never neither), watermark's second file, async and
its alias, the sync budget; cloudSource is a 501."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.tools.catalog import TOOLS
from services.gateway import forms, toolforms, transfer
from services.gateway.multipart import ParsedForm
from tests.gateway.conftest import bad_fields, form, uploaded

BUDGET = 1000


def parse(tool: str, parsed: ParsedForm, budget: int = BUDGET) -> toolforms.ToolForm:
    return toolforms.parser(TOOLS[tool], budget)(parsed)


def test_a_tool_form_fills_every_default_and_builds_a_tool_job() -> None:
    made = parse("gif", form(fps="15"))
    assert made.params == {"start": "0.0", "duration": "4.0", "width": "480", "fps": "15"}
    request = made.job_request()
    assert request.job_type == jobs_pb2.JOB_TYPE_TOOL and request.tool.tool == "gif"
    assert [spec.blob_id for spec in request.files] == ["blob-0"]
    assert request.max_source_bytes == BUDGET and not made.background


def test_every_bad_field_of_a_tool_is_named_at_once() -> None:
    fields = bad_fields(
        lambda p: parse("transform", p),
        form(width="0", fit="squash", flip="perhaps", cropLeft="3", background="x"),
    )
    assert set(fields) == {"width", "fit", "flip", "background"}
    fields = bad_fields(lambda p: parse("transform", p), form(cropLeft="3"))
    assert set(fields) == {"cropTop", "cropWidth", "cropHeight"}


@pytest.mark.parametrize("name", ["async", "background"])
def test_async_and_its_alias_run_the_tool_as_a_job(name: str) -> None:
    made = parse("trim", ParsedForm({name: ["true"]}, (uploaded(0),)))
    assert made.background and made.job_request().max_source_bytes == 0


def test_a_file_or_a_source_url_never_both_never_neither() -> None:
    url = "https://example.test/clip.mp4"
    made = parse("inspect", form(0, sourceUrl=url))
    assert made.sources == (forms.SourceUrl(url),)
    assert made.job_request().files[0].source_url == url
    assert set(bad_fields(lambda p: parse("inspect", p), form(1, sourceUrl=url))) == {"sourceUrl"}
    assert set(bad_fields(lambda p: parse("inspect", p), form(0))) == {"files"}
    assert set(bad_fields(lambda p: parse("inspect", p), form(0, sourceUrl="ftp://x/y"))) == {
        "sourceUrl"
    }


def test_one_file_for_most_tools_and_many_for_image_to_pdf() -> None:
    assert set(bad_fields(lambda p: parse("trim", p), form(2))) == {"files"}
    assert len(parse("image-to-pdf", form(3)).job_request().files) == 3


def test_watermark_takes_text_or_its_second_file() -> None:
    logo = dataclasses.replace(uploaded(9), field="watermarkFile")
    parsed = ParsedForm({}, (uploaded(0), logo))
    made = parse("watermark", parsed)
    assert made.extra == logo and made.job_request().extra_file.blob_id == "blob-9"
    assert made.uploads == (uploaded(0), logo)
    assert set(bad_fields(lambda p: parse("watermark", p), form())) == {"text"}
    both = ParsedForm({"text": ["hi"]}, (uploaded(0), logo))
    assert set(bad_fields(lambda p: parse("watermark", p), both)) == {"text"}


def test_a_synchronous_run_over_the_budget_points_at_async() -> None:
    with pytest.raises(MeshError) as caught:
        parse("trim", form(1), budget=50)
    assert caught.value.reason is Reason.TOO_LARGE and "async=true" in caught.value.message
    assert parse("trim", ParsedForm({"async": ["1"]}, (uploaded(0),)), budget=50).background


def test_unknown_fields_are_warned_about_and_case_slips_refused() -> None:
    made = parse("gif", form(colour="red"))
    assert made.warnings == (
        "The field 'colour' is not read by POST /api/media/gif and was ignored.",
    )
    assert bad_fields(lambda p: parse("gif", p), form(FPS="3")) == {
        "FPS": "is not a field; did you mean 'fps'?"
    }


def test_cloud_source_is_not_offered() -> None:
    with pytest.raises(MeshError) as caught:
        parse("gif", form(0, cloudSource="s3://bucket/key"))
    assert caught.value.reason is Reason.NOT_IMPLEMENTED
    with pytest.raises(MeshError) as caught:
        forms.parse_job_form(form(0, cloudSource="gdrive", format="png"))
    assert caught.value.reason is Reason.NOT_IMPLEMENTED


def test_the_conversion_forms_take_a_source_url() -> None:
    url = "http://files.example.test/a.png"
    job = forms.parse_job_form(form(0, sourceUrl=url, format="webp"))
    (spec,) = job.job_request().files
    assert spec.source_url == url and spec.options.format == "webp" and job.uploads == ()
    convert = forms.parse_convert_form(form(0, sourceUrl=url, format="png"))
    assert convert.files[0][0] == forms.SourceUrl(url)


def test_a_transfer_body_is_validated_whole() -> None:
    made = transfer.parse_transfer(
        {"sourceUrl": "https://x.test/a.zip", "extract": "true", "background": True, "x": 1}
    )
    assert (made.extract, made.background, made.destination) == (True, True, "storage")
    assert made.warnings == ("The field 'x' is not read by POST /api/transfer and was ignored.",)
    request = made.job_request()
    assert request.job_type == jobs_pb2.JOB_TYPE_TRANSFER and request.extract
    with pytest.raises(MeshError) as caught:
        transfer.parse_transfer({"destination": "moon", "extract": "sometimes", "sourceUrl": 5})
    assert set(caught.value.detail["fields"]) == {"destination", "extract", "sourceUrl"}
    with pytest.raises(MeshError) as caught:
        transfer.parse_transfer({})
    assert set(caught.value.detail["fields"]) == {"sourceUrl"}
    with pytest.raises(MeshError) as caught:
        transfer.parse_transfer({"cloudSource": {"provider": "dropbox"}})
    assert caught.value.reason is Reason.NOT_IMPLEMENTED
