from __future__ import annotations

import pytest

from mesh.errors import MeshError, Reason
from mesh.fields import BadValueError, FieldErrors, flag, number, one_of, whole


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("1", True),
        (" TRUE ", True),
        ("false", False),
        ("0", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_booleans_come_as_true_false_1_0_text_or_json(value: object, expected: bool) -> None:
    assert flag(value) is expected


@pytest.mark.parametrize("value", ["yes", "on", "", "2", 2, 1.0, None, [True]])
def test_other_boolean_spellings_are_refused(value: object) -> None:
    with pytest.raises(BadValueError, match="must be true or false"):
        flag(value)


@pytest.mark.parametrize(("value", "expected"), [("82", 82), (" +7 ", 7), (100, 100), (5.0, 5)])
def test_whole_numbers_come_as_text_or_json_numbers(value: object, expected: int) -> None:
    assert whole(1, 100)(value) == expected


@pytest.mark.parametrize("value", ["0", "101", "1.5", "1e2", "x", True, 2.5, "9" * 5000, None])
def test_non_whole_or_out_of_range_numbers_are_refused(value: object) -> None:
    with pytest.raises(BadValueError, match="must be a whole number from 1 to 100"):
        whole(1, 100)(value)


def test_choices_are_matched_case_insensitively_and_listed_when_wrong() -> None:
    assert one_of("jpg", "png")(" PNG ") == "png"
    with pytest.raises(BadValueError, match="must be one of jpg, png"):
        one_of("jpg", "png")("gif")


def test_rules_state_their_json_schema() -> None:
    assert whole(1, 100).schema == {"type": "integer", "minimum": 1, "maximum": 100}
    assert number(0, 1).schema == {"type": "number", "minimum": 0, "maximum": 1}
    assert one_of("jpg", "png").schema == {"type": "string", "enum": ["jpg", "png"]}
    assert flag.schema == {"type": "boolean"}


def test_another_tables_field_errors_merge_and_other_errors_pass_through() -> None:
    errors = FieldErrors()
    errors.merge(MeshError(Reason.INVALID_FIELD, "x", fields={"width": "is bad"}))
    assert errors.fields == {"width": ["is bad"]}
    with pytest.raises(MeshError) as caught:
        errors.merge(MeshError(Reason.UNSUPPORTED_PAIR, "no"))
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR


def test_one_bad_field_is_named_in_the_message() -> None:
    errors = FieldErrors()
    errors.add("format", "must be one of jpg, png")
    with pytest.raises(MeshError) as caught:
        errors.raise_if_any()
    assert caught.value.reason is Reason.INVALID_FIELD
    assert caught.value.message == "The field 'format' must be one of jpg, png."
    assert caught.value.detail == {"fields": {"format": "must be one of jpg, png"}}


def test_several_problems_are_joined_and_repeats_dropped() -> None:
    errors = FieldErrors()
    for name, problem in [("a", "x"), ("b", "y"), ("a", "z"), ("a", "x")]:
        errors.add(name, problem)
    with pytest.raises(MeshError) as caught:
        errors.raise_if_any()
    assert caught.value.message == "2 fields are invalid: a, b."
    assert caught.value.detail["fields"] == {"a": "x; z", "b": "y"}


def test_no_problems_raise_nothing() -> None:
    FieldErrors().raise_if_any()
