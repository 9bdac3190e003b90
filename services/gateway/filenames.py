"""Client file names made safe to show back: never used as a path or storage key.

Names travel into JSON results, `Content-Disposition` headers and logs, so everything that can
move the cursor, split a header line or reorder text on screen is removed.
"""

from __future__ import annotations

import unicodedata

MAX_FILENAME_BYTES = 255
FALLBACK_FILENAME = "file"

# Bidi embeddings, overrides, isolates and marks: U+202E turns "gpj.exe" into "exe.jpg" on screen.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Control characters (NUL, CR, LF, DEL, C1), line and paragraph separators, lone surrogates.
_DROPPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
# An extension longer than this is not worth keeping when the name must be shortened.
_MAX_SUFFIX_BYTES = 16


def _shown(char: str) -> bool:
    return char not in _BIDI_CONTROLS and unicodedata.category(char) not in _DROPPED_CATEGORIES


def _truncate(name: str, limit: int) -> str:
    """Cuts to `limit` UTF-8 bytes on a character boundary, keeping a short extension."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    suffix_bytes = len(suffix.encode()) + 1
    if dot and stem and suffix_bytes <= _MAX_SUFFIX_BYTES:
        kept = stem.encode()[: limit - suffix_bytes].decode(errors="ignore")
        return f"{kept}.{suffix}"
    return name.encode()[:limit].decode(errors="ignore")


def display_filename(raw: str) -> str:
    """The last path component of `raw`, without invisible or line-breaking characters."""
    cleaned = "".join(ch for ch in unicodedata.normalize("NFC", raw) if _shown(ch))
    # Windows clients and old browsers send full paths with either separator.
    base = cleaned.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base.strip("."):
        return FALLBACK_FILENAME
    return _truncate(base, MAX_FILENAME_BYTES)
