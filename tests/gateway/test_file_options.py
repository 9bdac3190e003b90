from __future__ import annotations

import dataclasses

import pytest

from mesh.formats import OUTPUT_FORMATS
from mesh.options import ConversionOptions, Mode
from services.gateway import file_options
from services.gateway.forms import parse_job_form
from tests.gateway.conftest import bad_fields, form, options_of


def test_option_table_covers_every_conversion_option() -> None:
    table = {option.attr for option in file_options.OPTIONS}
    assert table == {f.name for f in dataclasses.fields(ConversionOptions)}


def test_single_forms_apply_to_every_file() -> None:
    job = parse_job_form(
        form(
            files=2,
            format="WebP",
            resize="width",
            resizeWidth="800",
            resizeHeight="600",
            compression="70",
            autoOrient="false",
            mono="1",
            mode="target-size",
            targetBytes="50000",
            lossless="true",
            stripMetadata="1",
        )
    )
    expected = ConversionOptions(
        format="webp",
        resize="width",
        resize_width=800,
        resize_height=600,
        compression=70,
        auto_orient=False,
        mono=True,
        mode=Mode.TARGET_SIZE,
        target_bytes=50000,
        lossless=True,
        strip_metadata=True,
    )
    assert options_of(job) == [expected, expected]


def test_per_file_arrays_set_each_file_and_win_over_single_forms() -> None:
    job = parse_job_form(
        form(
            files=2,
            format="gif",
            formats='["png", "avif"]',
            resizes='["square", "height"]',
            resizeWidths="[640, null]",
            resizeHeights='[null, "480"]',
            compressions="[10, 90]",
            autoOrients="[false, true]",
            monos="[1, 0]",
            modes='["quality", "target-size"]',
            targetByteValues="[null, 1000]",
            losslessValues='["true", false]',
            stripMetadataValues="[true, 0]",
        )
    )
    first, second = options_of(job)
    assert first == ConversionOptions(
        format="png",
        resize="square",
        resize_width=640,
        compression=10,
        auto_orient=False,
        mono=True,
        strip_metadata=True,
        lossless=True,
    )
    assert second == ConversionOptions(
        format="avif",
        resize="height",
        resize_height=480,
        compression=90,
        mode=Mode.TARGET_SIZE,
        target_bytes=1000,
    )


def test_null_array_entry_falls_back_to_the_single_form() -> None:
    job = parse_job_form(form(files=3, format="webp", formats='["png", null, ""]'))
    assert [options.format for options in options_of(job)] == ["png", "webp", "webp"]


def test_array_with_the_wrong_length_names_the_field() -> None:
    fields = bad_fields(parse_job_form, form(files=2, format="jpg", compressions="[82]"))
    assert fields == {"compressions": "must have 2 entries, one per file"}


@pytest.mark.parametrize("raw", ["jpg", '{"a": 1}', "[1,", "[" * 60000])
def test_array_that_is_not_a_json_array_is_refused(raw: str) -> None:
    fields = bad_fields(parse_job_form, form(format="jpg", compressions=raw))
    assert fields == {"compressions": "must be a JSON array with one entry per file"}


def test_bogus_format_inside_an_array_names_the_entry() -> None:
    fields = bad_fields(parse_job_form, form(files=2, formats='["png", "bmp"]'))
    assert fields["formats"].startswith("entry 2 must be one of jpg")


def test_convert_requires_a_format_for_every_file() -> None:
    assert bad_fields(parse_job_form, form()).keys() == {"format"}
    fields = bad_fields(parse_job_form, form(files=2, formats='["png", null]'))
    assert fields == {
        "formats": "entry 2 is required for convert: one of " + ", ".join(OUTPUT_FORMATS)
    }


def test_compression_beats_quality_and_convert_ignores_quality() -> None:
    compress = parse_job_form(form(jobType="compress", quality="55", compression="40"))
    convert = parse_job_form(form(format="png", quality="55"))
    assert options_of(compress)[0].compression == 40
    assert options_of(convert)[0].compression == 82


def test_width_and_height_presets_need_their_dimension() -> None:
    assert bad_fields(parse_job_form, form(format="png", resize="width")) == {
        "resizeWidth": "is required when resize is width"
    }
    assert bad_fields(parse_job_form, form(format="png", resize="height")) == {
        "resizeHeight": "is required when resize is height"
    }
    fields = bad_fields(
        parse_job_form,
        form(files=2, format="png", resizes='["original", "width"]', resizeWidths="[500, null]"),
    )
    assert fields == {"resizeWidths": "entry 2 is required when resize is width"}


@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "abc", "70000"])
def test_dimensions_must_be_positive_whole_pixels(raw: str) -> None:
    assert bad_fields(parse_job_form, form(format="png", resizeWidth=raw)) == {
        "resizeWidth": "must be a whole number from 1 to 65535"
    }


def test_target_size_mode_needs_target_bytes() -> None:
    assert bad_fields(parse_job_form, form(format="jpg", mode="target-size")) == {
        "targetBytes": "must be a positive number of bytes when mode is target-size"
    }
    assert bad_fields(parse_job_form, form(format="jpg", mode="smallest")).keys() == {"mode"}
