"""Embedded pictures librsvg cannot decode. The libvips wheel's librsvg reads PNG and JPEG
data: URIs only; GIF and WebP ones (which browsers and resvg show) are re-encoded here as PNG,
first frame only, after the same header-before-pixels size check as any other source."""

from __future__ import annotations

import base64
import binascii
import re

import pyvips

# Far beyond any picture embedded in a drawing; the document itself is capped in svgsafe.
MAX_EMBEDDED_PIXELS = 16_000_000

_LOADERS = {b"gif": "gifload_buffer", b"webp": "webpload_buffer"}
_DATA_URI = re.compile(rb"data:image/(gif|webp);base64,([A-Za-z0-9+/=\s]+)", re.IGNORECASE)


def _as_png(match: re.Match[bytes]) -> bytes:
    try:
        data = base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True)
        # Only the named format's loader runs: nothing else is sniffed from the bytes.
        load = getattr(pyvips.Image, _LOADERS[match.group(1).lower()])
        image = load(data, access="sequential")
        if image.width * image.height > MAX_EMBEDDED_PIXELS:
            return b"data:,"
        png = image.pngsave_buffer(compression=1)
    except (binascii.Error, ValueError, pyvips.Error):
        return b"data:,"  # an undecodable picture is left out, as a browser leaves it
    return b"data:image/png;base64," + base64.b64encode(png)


def decodable(data: bytes) -> bytes:
    """The document with every GIF and WebP data: URI re-encoded as a PNG one."""
    return _DATA_URI.sub(_as_png, data)
