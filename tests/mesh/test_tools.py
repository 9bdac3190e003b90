"""The tool parameter contract: API.md's defaults, form and JSON values, one error for every bad
field, a lossless round trip through a task's string map, routing by family, mark placement."""

from __future__ import annotations

import dataclasses

import pytest

from mesh.errors import MeshError, Reason
from mesh.fields import parse, specs, to_fields
from mesh.formats import Family
from mesh.tools import catalog, marks
from mesh.tools import params as p

# API.md "Media tools", field by field (None: no default, the tool decides).
API_DEFAULTS: dict[str, dict[str, object]] = {
    "convert": {"format": "mp4", "compressionLevel": 75, "resize": "original",
                "resizeWidth": None, "resizeHeight": None},
    "extract-audio": {"format": "mp3", "bitrateKbps": 192},
    "trim": {"start": 0.0, "duration": 10.0, "format": ""},
    "gif": {"start": 0.0, "duration": 4.0, "width": 480, "fps": 12},
    "thumbnail": {"format": "jpg", "width": 512, "height": 512, "fit": "cover", "quality": 82,
                  "timestamp": 1.0},
    "poster-frame": {"timestamp": 1.0, "format": "jpg", "width": 1280, "quality": 86},
    "storyboard": {"frames": 12, "columns": 4, "width": 240, "format": "jpg", "quality": 86},
    "inspect": {"filename": ""},
    "strip-metadata": {},
    "image-to-pdf": {"pageSize": "auto"},
    "pdf-preview": {"format": "jpg", "page": 1, "width": 1600, "quality": 86},
    "watermark": {"text": "", "position": "bottom-right", "opacity": 0.72, "margin": 32,
                  "watermarkWidth": None},
    "transform": {"format": "webp", "width": None, "height": None, "fit": "cover", "rotate": 0.0,
                  "flip": False, "flop": False, "quality": 86, "cropLeft": None, "cropTop": None,
                  "cropWidth": None, "cropHeight": None},
}  # fmt: skip


def test_the_catalog_has_the_thirteen_tools_of_the_api() -> None:
    assert list(catalog.TOOLS) == list(API_DEFAULTS)


@pytest.mark.parametrize("name", list(API_DEFAULTS))
def test_defaults_are_the_apis(name: str) -> None:
    tool = catalog.TOOLS[name]
    made = catalog.params_for(tool, {})
    found = {spec.name: getattr(made, attribute) for attribute, spec in specs(tool.params)}
    assert found == API_DEFAULTS[name]


def test_form_text_and_json_values_parse_alike() -> None:
    form = {"format": "PNG", "width": "300", "fit": "inside", "quality": "90", "timestamp": "2.5"}
    json_values = {
        "format": "png",
        "width": 300,
        "fit": "inside",
        "quality": 90.0,
        "timestamp": 2.5,
    }
    assert parse(p.ThumbnailParams, form) == parse(p.ThumbnailParams, json_values)
    flags = parse(p.TransformParams, {"flip": "1", "flop": True, "width": "", "rotate": "-90"})
    assert (flags.flip, flags.flop, flags.width, flags.rotate) == (True, True, None, -90.0)


def test_every_bad_field_is_named_in_one_error() -> None:
    bad = {"frames": "0", "columns": "many", "width": "12.5", "format": "bmp", "quality": "101"}
    with pytest.raises(MeshError) as caught:
        parse(p.StoryboardParams, bad)
    error = caught.value
    assert error.reason is Reason.INVALID_FIELD
    assert set(error.detail["fields"]) == set(bad)
    assert error.message == "5 fields are invalid: frames, columns, width, format, quality."
    assert "from 1 to 100" in error.detail["fields"]["frames"]


def test_a_single_bad_field_reads_as_a_sentence() -> None:
    with pytest.raises(MeshError) as caught:
        parse(p.WatermarkParams, {"opacity": "1.5"})
    assert caught.value.message == "The field 'opacity' must be a number from 0 to 1."


@pytest.mark.parametrize(
    "values", [{"start": "nan"}, {"start": "-1"}, {"start": "1e400"}, {"duration": "0"}]
)
def test_seconds_must_be_finite_and_in_range(values: dict[str, str]) -> None:
    with pytest.raises(MeshError):
        parse(p.TrimParams, values)


def test_crop_needs_all_four_fields() -> None:
    with pytest.raises(MeshError) as caught:
        parse(p.TransformParams, {"cropLeft": "10", "cropWidth": "20"})
    assert set(caught.value.detail["fields"]) == {"cropTop", "cropHeight"}
    full = parse(p.TransformParams, {"cropLeft": "1", "cropTop": "2", "cropWidth": "3",
                                     "cropHeight": "4"})  # fmt: skip
    assert full.crop == (1, 2, 3, 4)


def test_resize_presets_that_need_a_side_require_it() -> None:
    with pytest.raises(MeshError) as caught:
        parse(p.MediaConvertParams, {"resize": "width"})
    assert set(caught.value.detail["fields"]) == {"resizeWidth"}


def test_text_refuses_control_characters_and_length() -> None:
    with pytest.raises(MeshError):
        parse(p.WatermarkParams, {"text": "a\x00b"})
    with pytest.raises(MeshError):
        parse(p.WatermarkParams, {"text": "x" * (p.MAX_TEXT + 1)})


def _changed(params: object) -> object:
    """Every number and flag moved off its default, to a value the rules accept."""
    changes: dict[str, object] = {}
    for field in dataclasses.fields(params):  # type: ignore[arg-type]
        default = field.default
        if isinstance(default, bool):
            changes[field.name] = not default
        elif isinstance(default, int):
            changes[field.name] = default + 1
        elif isinstance(default, float):
            changes[field.name] = default / 3 if field.name == "opacity" else default + 0.5
    return dataclasses.replace(params, **changes)  # type: ignore[type-var]


@pytest.mark.parametrize("name", list(API_DEFAULTS))
def test_parameters_survive_a_tasks_string_map(name: str) -> None:
    tool = catalog.TOOLS[name]
    changed = _changed(catalog.params_for(tool, {}))
    fields = to_fields(changed)
    assert all(isinstance(value, str) for value in fields.values())
    assert catalog.params_for(tool, fields) == changed


@pytest.mark.parametrize(
    ("tool", "family"),
    [
        ("thumbnail", Family.IMAGE),
        ("thumbnail", Family.PDF),
        ("thumbnail", Family.VIDEO),
        ("strip-metadata", Family.AUDIO),
        ("watermark", Family.VIDEO),
        ("transform", Family.SVG),
    ],
)
def test_tools_take_their_families(tool: str, family: Family) -> None:
    catalog.check_family(catalog.tool_named(tool), family)


def test_a_tool_refuses_a_family_it_does_not_take() -> None:
    with pytest.raises(MeshError) as caught:
        catalog.check_family(catalog.tool_named("storyboard"), Family.AUDIO, "mp3")
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR
    assert "mp3" in caught.value.message and "video" in caught.value.message
    with pytest.raises(MeshError) as unknown:
        catalog.tool_named("teleport")
    assert unknown.value.reason is Reason.NOT_FOUND


@pytest.mark.parametrize(
    ("position", "at"),
    [
        ("top-left", (10, 10)),
        ("top", (450, 10)),
        ("top-right", (890, 10)),
        ("left", (10, 225)),
        ("center", (450, 225)),
        ("right", (890, 225)),
        ("bottom-left", (10, 440)),
        ("bottom", (450, 440)),
        ("bottom-right", (890, 440)),
    ],
)
def test_marks_sit_at_their_position_inside_the_margin(position: str, at: tuple[int, int]) -> None:
    assert marks.offset(position, (1000, 500), (100, 50), 10) == at


def test_a_mark_is_a_quarter_wide_by_default_and_never_leaves_the_picture() -> None:
    assert marks.mark_width(p.WatermarkParams(), 1000) == 250
    assert marks.mark_width(p.WatermarkParams(watermark_width=5000, margin=50), 1000) == 900
    assert marks.offset("bottom-right", (100, 100), (100, 100), 30) == (0, 0)


def test_text_marks_have_the_width_and_the_opacity() -> None:
    mark = marks.render(p.WatermarkParams(text="convertmesh", opacity=0.5), None, 800)
    assert abs(mark.width - 200) <= 8
    peak = mark.getchannel("A").getextrema()[1]
    assert isinstance(peak, int) and 100 <= peak <= 128
