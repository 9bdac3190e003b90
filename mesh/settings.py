"""Reading settings from the environment, one place that names the variable when it is wrong.

Each service keeps its own frozen settings dataclass. Its `from_env(env=os.environ)` reads every
variable the service needs through one `Env` and passes the result down; nothing else reads the
environment. `Env` parses each value and checks its range, collecting every problem, and
`validate()` then refuses them all at once, each naming its variable (imgproxy's
`config.Validate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class SettingsError(ValueError):
    """One or more variables hold a bad value; the message names each."""


class Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._problems: list[str] = []

    def text(self, name: str, default: str) -> str:
        return self._env.get(name) or default

    def raw(self, name: str) -> str | None:
        """The value as set (an empty one included), or None when the variable is unset."""
        return self._env.get(name)

    def optional(self, name: str) -> str | None:
        """The value, or None when the variable is unset or empty."""
        return self._env.get(name) or None

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        found = self.optional_integer(name, minimum=minimum, maximum=maximum)
        return default if found is None else found

    def optional_integer(
        self, name: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        value = _whole(raw)
        if value is None:
            self._refuse(name, raw, "a whole number")
        elif minimum is not None and value < minimum:
            self._refuse(name, raw, f"at least {minimum}")
        elif maximum is not None and value > maximum:
            self._refuse(name, raw, f"at most {maximum}")
        else:
            return value
        return None

    def number(
        self, name: str, default: float, *, minimum: float | None = None, positive: bool = False
    ) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self._refuse(name, raw, "a number")
            return default
        if (positive and not value > 0) or (minimum is not None and value < minimum):
            self._refuse(name, raw, "more than 0" if positive else f"at least {minimum:g}")
            return default
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self._refuse(name, raw, "true or false")
        return False

    def problem(self, name: str, message: str) -> None:
        """Records a problem found by a service's own parser, e.g. a list or an allowlist."""
        self._problems.append(f"{name} {message}")

    def validate(self) -> None:
        if self._problems:
            raise SettingsError("; ".join(self._problems))

    def _refuse(self, name: str, raw: str, expected: str) -> None:
        self.problem(name, f"must be {expected}, got {raw!r}")


def load(read: Callable[[Env], T], env: Mapping[str, str]) -> T:
    """Reads settings with `read`, then refuses them if any variable was bad."""
    reader = Env(env)
    settings = read(reader)
    reader.validate()
    return settings


def env_int(name: str, default: int) -> int:
    """One whole-number variable of the process environment (for settings not yet on `Env`)."""
    return load(lambda env: env.integer(name, default), os.environ)


def export(name: str, value: str) -> None:
    """Sets a variable of this process's environment, for the processes it starts (a
    worker's TMPDIR in its scratch folder)."""
    os.environ[name] = value


def _whole(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)  # `1e8` for a pixel count
    except ValueError:
        return None
    return int(value) if value.is_integer() else None
