"""SVG sanitising: strip every construct that could reach outside the document before librsvg
sees it. librsvg already refuses most external loads when given a buffer with no base URL;
this is the second wall (and the one a test can read): no DOCTYPE/entities (XXE, billion
laughs), no processing instructions, no external href/src/url()/@import — only same-document
fragments and data: URIs survive."""

from __future__ import annotations

import re

from mesh.errors import MeshError, Reason

# An SVG is text held in memory while it is sanitised; far beyond any real drawing.
MAX_SVG_BYTES = 32 * 1024 * 1024

_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.IGNORECASE | re.DOTALL)
_ENTITY_DECL = re.compile(rb"<!ENTITY.*?>", re.IGNORECASE | re.DOTALL)
_PROCESSING = re.compile(rb"<\?(?!xml\s)(?!xml\?).*?\?>", re.DOTALL)
_ENTITY_REF = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)[^;\s<>&]*;")
_HREF = re.compile(
    rb"""(?P<name>(?:[\w-]+:)?(?:href|src))\s*=\s*(?P<q>["'])(?P<value>.*?)(?P=q)""",
    re.IGNORECASE | re.DOTALL,
)
_URL = re.compile(rb"""url\(\s*(?P<q>["']?)(?P<value>[^)]*?)(?P=q)\s*\)""", re.IGNORECASE)
_IMPORT = re.compile(rb"@import[^;]*;?", re.IGNORECASE)
_LOCAL = re.compile(rb"\s*(?:#|data:)", re.IGNORECASE)


def _local(value: bytes) -> bool:
    return _LOCAL.match(value) is not None


def _href(match: re.Match[bytes]) -> bytes:
    return match.group(0) if _local(match.group("value")) else b""


def _url(match: re.Match[bytes]) -> bytes:
    return match.group(0) if _local(match.group("value")) else b"none"


def sanitise(data: bytes) -> bytes:
    """The SVG with every external reference and entity removed."""
    if len(data) > MAX_SVG_BYTES:
        raise MeshError(
            Reason.LIMIT_EXCEEDED,
            f"The SVG is larger than {MAX_SVG_BYTES} bytes.",
            max_bytes=MAX_SVG_BYTES,
        )
    data = _DOCTYPE.sub(b"", data)
    data = _ENTITY_DECL.sub(b"", data)
    data = _PROCESSING.sub(b"", data)
    data = _ENTITY_REF.sub(b"", data)
    data = _IMPORT.sub(b"", data)
    data = _HREF.sub(_href, data)
    return _URL.sub(_url, data)
