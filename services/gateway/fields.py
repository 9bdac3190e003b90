"""Form field values: client text turned into typed values, every problem kept for one 400."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mesh.errors import MeshError, Reason
from services.gateway.multipart import ParsedForm

_INTEGER = re.compile(r"\+?\d{1,19}")
_TRUE = ("true", "1")
_FALSE = ("false", "0")


class BadValueError(Exception):
    """A value the client can fix; the message completes "The field 'x' ..."."""


def whole(value: object, low: int, high: int) -> int:
    """A whole number in [low, high] from form text or a JSON number."""
    number: int | None = None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not low <= number <= high:
        raise BadValueError(f"must be a whole number from {low} to {high}")
    return number


def one_of(value: object, choices: tuple[str, ...]) -> str:
    name = value.strip().lower() if isinstance(value, str) else None
    if name is None or name not in choices:
        raise BadValueError(f"must be one of {', '.join(choices)}")
    return name


def boolean(value: object) -> bool:
    """true/false/1/0 as form text, JSON booleans or JSON 1/0 (API.md Conventions)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str):
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    raise BadValueError("must be true or false (or 1 or 0)")


def given(form: ParsedForm, name: str) -> str | None:
    """The field's last value; an empty one counts as absent, as HTML forms send them."""
    value = form.last(name)
    return value if value is not None and value.strip() else None


@dataclass
class FieldErrors:
    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, problem: str) -> None:
        problems = self.fields.setdefault(name, [])
        if problem not in problems:
            problems.append(problem)

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
