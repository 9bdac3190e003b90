"""Field values read from form text or JSON: typed, defaulted, and every bad field kept for one
INVALID_FIELD error. The gateway's forms, the media tools' parameters and the orchestrator
(which parses a tool's parameters again) all read values with these rules.

A rule is called with the raw value and returns the typed one, or raises `BadValueError` whose
message completes "The field 'x' ..."; its `schema` is the value's JSON schema, for the OpenAPI
document. A parameter dataclass declares each field with `param(api_name, default, rule)`;
`parse` reads a mapping of API names (form fields, JSON, or the string map a task carries) into
it, and `to_fields` writes it back as strings, so `parse(cls, to_fields(p)) == p`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mesh.errors import MeshError, Reason

_WHOLE = re.compile(r"[+-]?\d{1,19}")
_NUMBER = re.compile(r"[+-]?(\d{1,12}(\.\d*)?|\.\d+)")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

P = TypeVar("P")
Schema = dict[str, Any]


class BadValueError(ValueError):
    """A value the client can fix; the message completes "The field 'x' ..."."""


class Rule(Protocol):
    def __call__(self, value: object, /) -> Any: ...

    @property
    def schema(self) -> Schema: ...


@dataclass(frozen=True)
class Whole:
    low: int
    high: int

    def __call__(self, value: object) -> int:
        number: int | None = None
        if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None or not self.low <= number <= self.high:
            raise BadValueError(f"must be a whole number from {self.low} to {self.high}")
        return number

    @property
    def schema(self) -> Schema:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Number:
    low: float
    high: float

    def __call__(self, value: object) -> float:
        found: float | None = None
        if isinstance(value, str):
            found = float(value) if _NUMBER.fullmatch(value.strip()) else None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found = float(value)
        if found is None or not math.isfinite(found) or not self.low <= found <= self.high:
            raise BadValueError(f"must be a number from {self.low:g} to {self.high:g}")
        return found

    @property
    def schema(self) -> Schema:
        return {"type": "number", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: object) -> str:
        name = value.strip().lower() if isinstance(value, str) else None
        if name is None or name not in self.choices:
            raise BadValueError(f"must be one of {', '.join(self.choices)}")
        return name

    @property
    def schema(self) -> Schema:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Flag:
    def __call__(self, value: object) -> bool:
        """true/false/1/0 as form text, JSON booleans or JSON 1/0 (API.md Conventions)."""
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, int | str) else ""
        if text not in _TRUE | _FALSE:
            raise BadValueError("must be true or false (or 1 or 0)")
        return text in _TRUE

    @property
    def schema(self) -> Schema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Text:
    max_length: int

    def __call__(self, value: object) -> str:
        if not isinstance(value, str) or len(value) > self.max_length:
            raise BadValueError(f"must be text of at most {self.max_length} characters")
        if any(ord(ch) < 0x20 and ch not in "\t" for ch in value):
            raise BadValueError("must not contain control characters")
        return value

    @property
    def schema(self) -> Schema:
        return {"type": "string", "maxLength": self.max_length}


def whole(low: int, high: int) -> Whole:
    return Whole(low, high)


def number(low: float, high: float) -> Number:
    return Number(low, high)


def one_of(*choices: str) -> OneOf:
    return OneOf(choices)


def text(max_length: int) -> Text:
    return Text(max_length)


flag = Flag()


@dataclass
class FieldErrors:
    """Bad fields gathered for one error; the message names them, each field's problems
    joined (a repeat dropped)."""

    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, problem: str) -> None:
        problems = self.fields.setdefault(name, [])
        if problem not in problems:
            problems.append(problem)

    def merge(self, error: MeshError) -> None:
        """Adds the fields of an INVALID_FIELD error (another table's), re-raising any other."""
        named = error.detail.get("fields")
        if error.reason is not Reason.INVALID_FIELD or not isinstance(named, dict):
            raise error
        for name, problem in named.items():
            self.add(str(name), str(problem))

    def raise_if_any(self) -> None:
        if not self.fields:
            return
        detail = {name: "; ".join(problems) for name, problems in self.fields.items()}
        if len(detail) == 1:
            ((name, problem),) = detail.items()
            message = f"The field '{name}' {problem}."
        else:
            message = f"{len(detail)} fields are invalid: {', '.join(detail)}."
        raise MeshError(Reason.INVALID_FIELD, message, fields=detail)


@dataclass(frozen=True)
class Spec:
    name: str
    rule: Rule


def param(name: str, default: Any, rule: Rule) -> Any:
    """A dataclass field read from the API field `name`; absent or blank means `default`."""
    return dataclasses.field(default=default, metadata={"spec": Spec(name, rule)})


def specs(cls: type) -> list[tuple[str, Spec]]:
    """(attribute, spec) for every declared parameter of a parameter dataclass."""
    return [(f.name, f.metadata["spec"]) for f in dataclasses.fields(cls) if "spec" in f.metadata]


def defaults(cls: type) -> dict[str, Any]:
    """API name -> default of every declared parameter."""
    return {
        f.metadata["spec"].name: f.default for f in dataclasses.fields(cls) if "spec" in f.metadata
    }


def parse(cls: type[P], values: Mapping[str, object]) -> P:
    """`cls` from API-named values; fields the tool does not know are ignored (a form also
    carries the file, `async` and so on). Raises one INVALID_FIELD naming every bad field."""
    problems = FieldErrors()
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
