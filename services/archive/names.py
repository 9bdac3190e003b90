"""Entry-name normalisation: every name from an archive passes here before it touches a path.

A name is split on both `/` and `\\` (Windows archivers write backslashes), so `..\\evil`
is the same traversal as `../evil`. Unsafe names are refused, not repaired: a repaired name
could collide with a legitimate entry, and the caller reports the skip to the user.
"""

from __future__ import annotations

import re

# Linux refuses longer components with ENAMETOOLONG; refusing them here keeps that a skip.
MAX_COMPONENT_BYTES = 255

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")


class UnsafeNameError(ValueError):
    """An entry name that must not become a path; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _as_text(raw: str | bytes) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    # tarfile and zipfile hand undecodable bytes back as lone surrogates.
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def normalise(raw: str | bytes, max_name_bytes: int) -> str:
    """The relative, `/`-separated form of an entry name, or UnsafeNameError.

    Control characters are replaced by `_` (they are legal on disk but break listings and
    headers); everything else Unicode is kept as written.
    """
    text = _as_text(raw)
    if "\x00" in text:
        raise UnsafeNameError("name contains a NUL byte")
    if len(text.encode("utf-8")) > max_name_bytes:
        raise UnsafeNameError(f"name longer than {max_name_bytes} bytes")
    text = text.replace("\\", "/")
    if text.startswith("/"):
        raise UnsafeNameError("absolute path")
    if _DRIVE.match(text):
        raise UnsafeNameError("drive-letter path")
    parts = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafeNameError("path escapes the archive root (..)")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise UnsafeNameError(f"path component longer than {MAX_COMPONENT_BYTES} bytes")
        parts.append(_CONTROL.sub("_", part))
    if not parts:
        raise UnsafeNameError("empty name")
    return "/".join(parts)


def from_filename(filename: str, max_name_bytes: int = 1024, default: str = "file") -> str:
    """A single safe entry name for an uploaded file: its last path component, sanitised."""
    base = _as_text(filename).replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
    while len(base.encode("utf-8")) > MAX_COMPONENT_BYTES:
        base = base[:-1]
    try:
        return normalise(base, max_name_bytes)
    except UnsafeNameError:
        return default
