"""SVG sanitising: strip every construct that could reach outside the document before librsvg
sees it. librsvg already refuses most external loads when given a buffer with no base URL;
this is the second wall (and the one a test can read): no DOCTYPE, no external entities (XXE),
no processing instructions, no external href/src/url()/@import — only same-document fragments
and data: URIs survive.

Internal entities (`<!ENTITY name "text">`, which SVG test suites and old editors use for
attribute values and markup) are expanded here, before the href/url rules run over the result;
an expansion that grows past `MAX_EXPANSION` (billion laughs) is abandoned and every entity
reference is dropped instead. A legacy `encoding=` in the XML declaration is transcoded to
UTF-8, because the bundled libxml2 reads only UTF-8/16 and Latin-1."""

from __future__ import annotations

import re

from mesh.errors import MeshError, Reason

# An SVG is text held in memory while it is sanitised; far beyond any real drawing.
MAX_SVG_BYTES = 32 * 1024 * 1024
# Bytes internal entities may add to a document; real documents add a few hundred.
MAX_EXPANSION = 1024 * 1024
_EXPANSION_PASSES = 8

_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.IGNORECASE | re.DOTALL)
_ENTITY_DECL = re.compile(rb"<!ENTITY.*?>", re.IGNORECASE | re.DOTALL)
_PROCESSING = re.compile(rb"<\?(?!xml\s)(?!xml\?).*?\?>", re.DOTALL)
_ENTITY_REF = re.compile(rb"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)[^;\s<>&]*;")
_HREF = re.compile(
    rb"""(?P<name>(?:[\w-]+:)?(?:href|src))\s*=\s*(?P<q>["'])(?P<value>.*?)(?P=q)""",
    re.IGNORECASE | re.DOTALL,
)
_URL = re.compile(rb"""url\(\s*(?P<q>["']?)(?P<value>[^)]*?)(?P=q)\s*\)""", re.IGNORECASE)
# An @import without its `;` ends at the stylesheet's end, never past the `<` closing it.
_IMPORT = re.compile(rb"@import[^;<{}]*;?", re.IGNORECASE)
_INTERNAL_ENTITY = re.compile(rb"""<!ENTITY\s+([\w.-]+)\s+(["'])(.*?)\2\s*>""", re.DOTALL)
_DECLARED_ENCODING = re.compile(
    rb"""\A(\s*<\?xml\b[^>]*?\bencoding\s*=\s*)(["'])([\w.:-]+)\2""", re.IGNORECASE
)
_UTF = frozenset({"utf-8", "utf8", "utf-16", "utf16"})
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
    data = _as_utf8(data)
    doctype = _DOCTYPE.search(data)
    entities = _internal_entities(doctype.group(0)) if doctype else {}
    data = _DOCTYPE.sub(b"", data)
    data = _ENTITY_DECL.sub(b"", data)
    if entities:
        data = _expand(data, entities)
    data = _PROCESSING.sub(b"", data)
    data = _ENTITY_REF.sub(b"", data)
    data = _IMPORT.sub(b"", data)
    data = _HREF.sub(_href, data)
    return _URL.sub(_url, data)


def _as_utf8(data: bytes) -> bytes:
    declared = _DECLARED_ENCODING.match(data)
    if declared is None or declared.group(3).decode("ascii").lower() in _UTF:
        return data
    try:
        text = data.decode(declared.group(3).decode("ascii"))
    except (LookupError, UnicodeDecodeError):
        return data  # librsvg then refuses it: a typed corrupt-input error
    start = declared.group(1) + declared.group(2) + b"UTF-8" + declared.group(2)
    return start + text.encode("utf-8")[len(declared.group(0)) :]


def _internal_entities(doctype: bytes) -> dict[bytes, bytes]:
    return {name: value for name, _, value in _INTERNAL_ENTITY.findall(doctype)}


def _expand(data: bytes, entities: dict[bytes, bytes]) -> bytes:
    limit = len(data) + MAX_EXPANSION
    pattern = re.compile(rb"&(" + b"|".join(re.escape(name) for name in entities) + rb");")
    for _ in range(_EXPANSION_PASSES):
        expanded = _expand_once(data, entities, pattern, limit)
        if expanded is None:
            return data
        if expanded == data:
            break
        data = expanded
    return data


def _expand_once(
    data: bytes, entities: dict[bytes, bytes], pattern: re.Pattern[bytes], limit: int
) -> bytes | None:
    """One level of substitution, or None once the result would pass `limit` bytes."""
    parts: list[bytes] = []
    size = position = 0
    for match in pattern.finditer(data):
        value = entities[match.group(1)]
        parts += (data[position : match.start()], value)
        size += match.start() - position + len(value)
        position = match.end()
        if size > limit:
            return None
    parts.append(data[position:])
    return b"".join(parts)
