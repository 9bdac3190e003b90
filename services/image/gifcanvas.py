"""The canvas a GIF really asks for, read from its bytes without decoding.

The logical screen can be small while the first frame's descriptor places a 65535-wide frame
at a far offset; decoders differ on whether they grow the canvas (Pillow) or give up (libvips
says "no frames", which would read as a corrupt file). Both are a size problem, so the limit
check uses the larger of the screen and the first frame's extent.
"""

from __future__ import annotations

from pathlib import Path

_HEADER = 13
_EXTENSION = 0x21
_DESCRIPTOR = 0x2C
# Scan no further than this for the first frame: extensions before it are small in real files.
_SCAN_BYTES = 1024 * 1024


def declared_canvas(path: Path) -> tuple[int, int]:
    """(width, height) covering the logical screen and the first frame; (0, 0) if unreadable."""
    with path.open("rb") as stream:
        data = stream.read(_SCAN_BYTES)
    if len(data) < _HEADER or not data.startswith(b"GIF"):
        return 0, 0
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    flags = data[10]
    offset = _HEADER + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    while offset < len(data):
        block = data[offset]
        if block == _EXTENSION:
            offset += 2
            while offset < len(data) and data[offset] != 0:
                offset += data[offset] + 1
            offset += 1
        elif block == _DESCRIPTOR and offset + 9 <= len(data):
            left, top, frame_w, frame_h = (
                int.from_bytes(data[offset + i : offset + i + 2], "little") for i in (1, 3, 5, 7)
            )
            return max(width, left + frame_w), max(height, top + frame_h)
        else:
            break
    return width, height
