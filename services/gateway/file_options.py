"""Per-file conversion options read from a form, driven by one table.

Each option has a single form (`format`) applying to every file and a JSON-array form
(`formats`) with exactly one entry per file. An array entry wins over the single form; a null or
empty entry falls back to it. Options left unset keep the defaults of `ConversionOptions`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mesh.fields import BadValueError, FieldErrors, flag, one_of, whole
from mesh.formats import OUTPUT_FORMATS
from mesh.options import PRESETS, ConversionOptions, Mode
from services.gateway.multipart import ParsedForm

MAX_PIXELS_PER_SIDE = 65535


_format = one_of(*OUTPUT_FORMATS)
_preset = one_of(*PRESETS)
_modes = one_of(*(mode.value for mode in Mode))
_pixels = whole(1, MAX_PIXELS_PER_SIDE)
_compression = whole(1, 100)
_byte_count = whole(1, 2**63 - 1)


def _mode(value: object) -> Mode:
    return Mode(_modes(value))


@dataclass(frozen=True)
class Option:
    attr: str  # the ConversionOptions field
    name: str  # single form
    array: str  # per-file JSON-array form
    parse: Callable[[object], object]
    alias: str = ""  # read when `name` is absent, on option sets that allow aliases


# API.md "Jobs": one row per per-file option.
OPTIONS: tuple[Option, ...] = (
    Option("format", "format", "formats", _format),
    Option("resize", "resize", "resizes", _preset),
    Option("resize_width", "resizeWidth", "resizeWidths", _pixels),
    Option("resize_height", "resizeHeight", "resizeHeights", _pixels),
    Option("compression", "compression", "compressions", _compression, alias="quality"),
    Option("auto_orient", "autoOrient", "autoOrients", flag),
    Option("mono", "mono", "monos", flag),
    Option("mode", "mode", "modes", _mode),
    Option("target_bytes", "targetBytes", "targetByteValues", _byte_count),
    Option("lossless", "lossless", "losslessValues", flag),
    Option("strip_metadata", "stripMetadata", "stripMetadataValues", flag),
)
_OPTION_FOR = {option.attr: option for option in OPTIONS}


@dataclass(frozen=True)
class _Requirement:
    """`attr` must be set (non-zero) for a file whenever `applies` holds for its options."""

    attr: str
    applies: Callable[[ConversionOptions], bool]
    problem: str


_FORMAT_REQUIRED = _Requirement(
    "format", lambda _: True, f"is required for convert: one of {', '.join(OUTPUT_FORMATS)}"
)
_SHARED_REQUIREMENTS = (
    _Requirement("resize_width", lambda o: o.resize == "width", "is required when resize is width"),
    _Requirement(
        "resize_height", lambda o: o.resize == "height", "is required when resize is height"
    ),
    _Requirement(
        "target_bytes",
        lambda o: o.mode is Mode.TARGET_SIZE,
        "must be a positive number of bytes when mode is target-size",
    ),
)


@dataclass(frozen=True)
class OptionSet:
    """The options one route reads, the requirements between them, and whether `quality`
    stands for `compression`."""

    options: tuple[Option, ...]
    requirements: tuple[_Requirement, ...]
    quality_alias: bool

    @property
    def names(self) -> frozenset[str]:
        """Every form field name these options are read from."""
        aliases = {o.alias for o in self.options if o.alias and self.quality_alias}
        return frozenset({o.name for o in self.options} | {o.array for o in self.options} | aliases)


CONVERT = OptionSet(OPTIONS, (_FORMAT_REQUIRED, *_SHARED_REQUIREMENTS), quality_alias=False)
# Compress keeps each input's format unless one is given.
COMPRESS_JOB = OptionSet(OPTIONS, _SHARED_REQUIREMENTS, quality_alias=True)
COMPRESS_SYNC = OptionSet(
    tuple(
        _OPTION_FOR[attr]
        for attr in ("compression", "mode", "target_bytes", "lossless", "strip_metadata")
    ),
    _SHARED_REQUIREMENTS,
    quality_alias=True,
)


def _single(form: ParsedForm, option: Option, using: OptionSet, errors: FieldErrors) -> object:
    name = option.name
    raw = form.given(name)
    if raw is None and using.quality_alias and option.alias:
        name = option.alias
        raw = form.given(name)
    if raw is None:
        return None
    try:
        return option.parse(raw)
    except BadValueError as problem:
        errors.add(name, str(problem))
        return None


def _entries(form: ParsedForm, option: Option, count: int, errors: FieldErrors) -> list[object]:
    """The array form parsed per file; all None when absent or unusable."""
    absent: list[object] = [None] * count
    raw = form.given(option.array)
    if raw is None:
        return absent
    try:
        values = json.loads(raw)
    except (ValueError, RecursionError):
        values = None
    if not isinstance(values, list):
        errors.add(option.array, "must be a JSON array with one entry per file")
        return absent
    if not count:
        return absent  # the missing files are reported on their own
    if len(values) != count:
        noun = "entry" if count == 1 else "entries"
        errors.add(option.array, f"must have {count} {noun}, one per file")
        return absent
    parsed: list[object] = []
    for index, value in enumerate(values):
        try:
            parsed.append(None if value is None or value == "" else option.parse(value))
        except BadValueError as problem:
            errors.add(option.array, f"entry {index + 1} {problem}")
            parsed.append(None)
    return parsed


def _check_requirements(
    form: ParsedForm, options: list[ConversionOptions], using: OptionSet, errors: FieldErrors
) -> None:
    for requirement in using.requirements:
        option = _OPTION_FOR[requirement.attr]
        if option.name in errors.fields or option.array in errors.fields:
            continue  # already reported as unparseable
        per_file = form.given(option.array) is not None
        for index, chosen in enumerate(options):
            if requirement.applies(chosen) and not getattr(chosen, requirement.attr):
                if per_file:
                    errors.add(option.array, f"entry {index + 1} {requirement.problem}")
                else:
                    errors.add(option.name, requirement.problem)


def read_file_options(
    form: ParsedForm, using: OptionSet, errors: FieldErrors, count: int | None = None
) -> list[ConversionOptions]:
    """One ConversionOptions per file (`count`, by default the uploaded ones); problems go to
    `errors`, never raised."""
    count = len(form.files) if count is None else count
    settings: list[dict[str, Any]] = [{} for _ in range(count)]
    for option in using.options:
        single = _single(form, option, using, errors)
        for chosen, entry in zip(settings, _entries(form, option, count, errors), strict=True):
            value = single if entry is None else entry
            if value is not None:
                chosen[option.attr] = value
    options = [replace(ConversionOptions(), **chosen) for chosen in settings]
    _check_requirements(form, options, using, errors)
    return options
