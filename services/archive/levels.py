"""The client's `compression` (1-100) mapped to each compressor's own level.

| compression | deflate (zip, gz, tgz) | bzip2 | LZMA2 preset (7z, xz, tar.xz) |
| ----------- | ---------------------- | ----- | ----------------------------- |
| 1           | 1                      | 1     | 0                             |
| 25          | 2                      | 2     | 1                             |
| 50          | 4                      | 4     | 2                             |
| 82 default  | 7                      | 7     | 4                             |
| 100         | 9                      | 9     | 6                             |

deflate and bzip2 scale linearly over 1-9. LZMA2 stops at preset 6 (8 MiB dictionary, about
94 MiB to compress): presets 7-9 need up to 674 MiB, more than a sandboxed worker may use,
for a few percent. A compress job (empty output format) uses compression 100.
"""

from __future__ import annotations

MAX_COMPRESSION = 100
_MAX_LZMA_PRESET = 6


def _clamped(compression: int) -> int:
    return min(max(compression, 1), MAX_COMPRESSION)


def deflate_level(compression: int) -> int:
    return 1 + (_clamped(compression) - 1) * 8 // 99


def bzip2_level(compression: int) -> int:
    return deflate_level(compression)


def lzma_preset(compression: int) -> int:
    return (_clamped(compression) - 1) * _MAX_LZMA_PRESET // 99
