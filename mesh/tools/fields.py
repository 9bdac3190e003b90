"""Tool parameters read from form text or JSON values: typed, defaulted, and every bad field kept
for one INVALID_FIELD error.

A parameter dataclass declares each field with `param(api_name, default, rule)`; `parse` reads a
mapping of API names (form fields, JSON, or the string map a task carries) into it, and
`to_fields` writes it back as strings, so `parse(cls, to_fields(p)) == p`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mesh.errors import MeshError, Reason

_WHOLE = re.compile(r"[+-]?\d{1,12}")
_NUMBER = re.compile(r"[+-]?(\d{1,12}(\.\d*)?|\.\d+)")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

Rule = Callable[[object], object]
P = TypeVar("P")


class BadValueError(ValueError):
    """The message completes "The field 'x' ..."."""


def whole(low: int, high: int) -> Rule:
    def rule(value: object) -> int:
        number: int | None = None
        if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not low <= number <= high:
            raise BadValueError(f"must be a whole number from {low} to {high}")
        return number

    return rule


def number(low: float, high: float) -> Rule:
    def rule(value: object) -> float:
        found: float | None = None
        if isinstance(value, str):
            found = float(value) if _NUMBER.fullmatch(value.strip()) else None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found = float(value)
        if found is None or not math.isfinite(found) or not low <= found <= high:
            raise BadValueError(f"must be a number from {low:g} to {high:g}")
        return found

    return rule


def one_of(*choices: str) -> Rule:
    def rule(value: object) -> str:
        name = value.strip().lower() if isinstance(value, str) else None
        if name is None or name not in choices:
            raise BadValueError(f"must be one of {', '.join(choices)}")
        return name

    return rule


def flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, int | str) else ""
    if text not in _TRUE | _FALSE:
        raise BadValueError("must be true or false (or 1 or 0)")
    return text in _TRUE


def text(max_length: int) -> Rule:
    def rule(value: object) -> str:
        if not isinstance(value, str) or len(value) > max_length:
            raise BadValueError(f"must be text of at most {max_length} characters")
        if any(ord(ch) < 0x20 and ch not in "\t" for ch in value):
            raise BadValueError("must not contain control characters")
        return value

    return rule


@dataclass(frozen=True)
class Spec:
    name: str
    rule: Rule


def param(name: str, default: Any, rule: Rule) -> Any:
    """A dataclass field read from the API field `name`; absent or blank means `default`."""
    return dataclasses.field(default=default, metadata={"spec": Spec(name, rule)})


class Problems:
    """Bad fields gathered for one error; the message names them the way the jobs form does."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def add(self, name: str, problem: str) -> None:
        self.fields.setdefault(name, problem)

    def raise_if_any(self) -> None:
        if not self.fields:
            return
        if len(self.fields) == 1:
            ((name, problem),) = self.fields.items()
            message = f"The field '{name}' {problem}."
        else:
            message = f"{len(self.fields)} fields are invalid: {', '.join(self.fields)}."
        raise MeshError(Reason.INVALID_FIELD, message, fields=dict(self.fields))


def specs(cls: type) -> list[tuple[str, Spec]]:
    """(attribute, spec) for every declared parameter of a parameter dataclass."""
    return [(f.name, f.metadata["spec"]) for f in dataclasses.fields(cls) if "spec" in f.metadata]


def parse(cls: type[P], values: Mapping[str, object]) -> P:
    """`cls` from API-named values; fields the tool does not know are ignored (a form also
    carries the file, `async` and so on). Raises one INVALID_FIELD naming every bad field."""
    problems = Problems()
    chosen: dict[str, object] = {}
    for attribute, spec in specs(cls):
        raw = values.get(spec.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            chosen[attribute] = spec.rule(raw)
        except BadValueError as error:
            problems.add(spec.name, str(error))
    problems.raise_if_any()
    made = cls(**chosen)
    check = getattr(made, "check", None)
    if check is not None:
        check(problems)
        problems.raise_if_any()
    return made


def to_fields(params: object) -> dict[str, str]:
    """The parameters as API-named strings (None values left out), for a task's string map."""
    out: dict[str, str] = {}
    for attribute, spec in specs(type(params)):
        value = getattr(params, attribute)
        if value is None:
            continue
        if isinstance(value, bool):
            out[spec.name] = "true" if value else "false"
        elif isinstance(value, float):
            out[spec.name] = repr(value)
        else:
            out[spec.name] = str(value)
    return out
