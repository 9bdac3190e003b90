"""An SVG's intrinsic size, made something librsvg accepts.

librsvg takes the size from the root's width/height, else its viewBox, else the drawing's
bounding box, and refuses a zero or negative width/height or an empty drawing with neither.
Browsers and resvg treat a zero or negative width/height as absent, and resvg falls back to
100x100 when nothing gives a size; the root is rewritten to say the same before librsvg reads it.

A root with neither a viewBox nor an absolute width/height is sized by its drawing's bounding
box (as resvg does), but librsvg then scales the canvas without the drawing: such a document is
rendered at its own size and the raster resized (`sized_by_content`).

feMorphology costs librsvg (pixels x radius in pixels squared): a 200-unit drawing with a
10-unit radius takes ~8 s at 1200 px and grows with the fourth power of the scale. A document
using it is rendered at no more than MAX_MORPHOLOGY_PIXELS and the raster scaled up from there
(`max_scale`); a document stacking many such filters is still bounded by the job's wall time.
"""

from __future__ import annotations

import re

DEFAULT_SIDE = 100
MAX_MORPHOLOGY_PIXELS = 400 * 400

_ROOT = re.compile(rb"<svg\b[^>]*>", re.IGNORECASE)
_DIMENSION = re.compile(rb"""\s(?:width|height)\s*=\s*(["'])\s*([^"']*)\1""")
_VIEW_BOX = re.compile(rb"""\sviewBox\s*=""")
_MORPHOLOGY = re.compile(rb"<feMorphology\b")
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _not_positive(value: bytes) -> bool:
    number = _NUMBER.match(value.strip())
    return number is not None and float(number.group(0)) <= 0


def _rewrite_root(data: bytes, default: bool) -> bytes:
    root = _ROOT.search(data)
    if root is None:
        return data
    tag = _DIMENSION.sub(
        lambda match: b"" if default or _not_positive(match.group(2)) else match.group(0),
        root.group(0),
    )
    if default:
        side = str(DEFAULT_SIDE).encode()
        tag = tag[:4] + b' width="' + side + b'" height="' + side + b'"' + tag[4:]
    return data[: root.start()] + tag + data[root.end() :]


def without_bad_size(data: bytes) -> bytes:
    """The document with a zero or negative root width/height removed."""
    return _rewrite_root(data, default=False)


def with_default_size(data: bytes) -> bytes:
    """The document with its root sized DEFAULT_SIDE x DEFAULT_SIDE."""
    return _rewrite_root(data, default=True)


def sized_by_content(data: bytes) -> bool:
    """True when the root has no viewBox and no absolute width and height."""
    root = _ROOT.search(data)
    if root is None or _VIEW_BOX.search(root.group(0)):
        return False
    sides = [match.group(2).strip() for match in _DIMENSION.finditer(root.group(0))]
    return len(sides) < 2 or any(side.endswith(b"%") for side in sides)


def max_scale(data: bytes, width: int, height: int) -> float | None:
    """The largest scale the document may be rendered at, None for no bound."""
    if sized_by_content(data):
        return 1.0
    if _MORPHOLOGY.search(data):
        return float((MAX_MORPHOLOGY_PIXELS / max(1, width * height)) ** 0.5)
    return None
