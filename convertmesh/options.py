"""Conversion options and their form fields (API.md "Jobs").

Each option has a single form (`format`) for every file and a per-file JSON-array form
(`formats`). `form_fields` sends the single form when all files agree and the array form, with
`null` where a file leaves the option unset, when they differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from convertmesh.errors import InvalidRequestError

RESIZE_PRESETS = (
    "original",
    "website",
    "email",
    "instagram",
    "linkedin",
    "ecommerce",
    "square",
    "width",
    "height",
)
MODES = ("quality", "target-size")


@dataclass(frozen=True)
class Options:
    """What to do with one file; None leaves the server's default."""

    format: str | None = None
    resize: str | None = None
    resize_width: int | None = None
    resize_height: int | None = None
    quality: int | None = None  # `compression` on the wire: 1-100
    auto_orient: bool | None = None
    mono: bool | None = None
    mode: str | None = None
    target_bytes: int | None = None
    lossless: bool | None = None
    strip_metadata: bool | None = None

    def merged(self, override: Options) -> Options:
        """These options with every value `override` sets replacing ours."""
        chosen = {f.name: getattr(override, f.name) for f in fields(override)}
        return replace(self, **{k: v for k, v in chosen.items() if v is not None})

    def normalised(self) -> Options:
        """A target size implies target-size mode."""
        if self.target_bytes is not None and self.mode is None:
            return replace(self, mode="target-size")
        return self


# attribute -> (single form, per-file form), in API.md's order.
WIRE_NAMES: dict[str, tuple[str, str]] = {
    "format": ("format", "formats"),
    "resize": ("resize", "resizes"),
    "resize_width": ("resizeWidth", "resizeWidths"),
    "resize_height": ("resizeHeight", "resizeHeights"),
    "quality": ("compression", "compressions"),
    "auto_orient": ("autoOrient", "autoOrients"),
    "mono": ("mono", "monos"),
    "mode": ("mode", "modes"),
    "target_bytes": ("targetBytes", "targetByteValues"),
    "lossless": ("lossless", "losslessValues"),
    "strip_metadata": ("stripMetadata", "stripMetadataValues"),
}


def wire_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def form_fields(per_file: Sequence[Options]) -> list[tuple[str, str]]:
    """The option fields of a form carrying one file per entry of `per_file`."""
    chosen = [options.normalised() for options in per_file]
    found: list[tuple[str, str]] = []
    for attr, (single, array) in WIRE_NAMES.items():
        values = [getattr(options, attr) for options in chosen]
        if all(value is None for value in values):
            continue
        if len(set(values)) == 1:
            found.append((single, wire_value(values[0])))
        else:
            found.append((array, json.dumps(values)))
    return found


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def parse_size(text: str) -> int:
    """Bytes from `200KB`, `1.5MB`, `300KiB`, `2000`: KB/MB/GB are decimal, KiB/MiB/GiB binary."""
    match = _SIZE.match(text)
    if match is None:
        raise InvalidRequestError(f"{text!r} is not a size (examples: 200KB, 1.5MB, 300KiB).")
    number, unit = match.group(1), (match.group(2) or "").lower()
    factor = 1024 ** ("kmg".index(unit[0]) + 1) if "i" in unit else _UNITS[unit[:1]]
    size = int(float(number) * factor)
    if size < 1:
        raise InvalidRequestError(f"{text!r} is less than one byte.")
    return size
