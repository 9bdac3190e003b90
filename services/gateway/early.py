"""Refusing a file by its first bytes, before the rest of it is stored.

A file whose format sniffing does not recognise can only be wrapped into an archive (API.md,
"any file": zip tar tgz 7z gz bz2 xz); asked for any other output, its job would be refused
with 415 at creation, after the whole upload was stored. The multipart reader holds back each
file's first `SNIFF_BYTES` and hands them to a `Vet` first: a file refused there is never
stored. The decision uses the fields read before the file: a form that names its output format
after its files is decided at creation, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from mesh.errors import MeshError, Reason
from mesh.formats import OUTPUT_FORMATS, Family, sniff

# The fields read so far, the file's position among the form's files, its first bytes.
Vet = Callable[[dict[str, list[str]], int, bytes], None]


def _given(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[-1].strip() or None if values else None


def _output_so_far(fields: dict[str, list[str]], index: int) -> str | None:
    """The file's output format as the fields read so far name it (`formats`' entry wins over
    `format`, as `file_options` reads them); None when not named yet or not a format."""
    raw = _given(fields, "formats")
    if raw is not None:
        try:
            entries = json.loads(raw)
        except (ValueError, RecursionError):
            entries = None
        if isinstance(entries, list) and index < len(entries):
            entry = entries[index]
            if isinstance(entry, str) and entry in OUTPUT_FORMATS:
                return entry
    single = _given(fields, "format")
    return single if single in OUTPUT_FORMATS else None


def _unrecognised(head: bytes) -> bool:
    return not sniff(head).known


def unknown_to_named_output(fields: dict[str, list[str]], index: int, head: bytes) -> None:
    """POST /api/jobs and /api/convert: an unrecognised file asked for a format other than an
    archive is 415, as its job would be."""
    output = _output_so_far(fields, index)
    if output is None or OUTPUT_FORMATS[output].family is Family.ARCHIVE:
        return
    if _unrecognised(head):
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            f"Converting an unrecognised format to {output} is not supported.",
            pair=f"unknown->{output}",
        )


def unknown_in_own_format(fields: dict[str, list[str]], index: int, head: bytes) -> None:
    """POST /api/compress: the output keeps the input's format, which an unrecognised file
    does not have."""
    if _unrecognised(head):
        raise MeshError(
            Reason.UNSUPPORTED_PAIR,
            "Files in this format cannot be compressed in their own format; choose an output "
            "format.",
            pair="unknown->unknown",
        )
