"""Zip pre-flight: read the end record and walk the central directory without building
objects, so entry-count and declared-size bombs are refused before zipfile parses them
(zipfile materialises one ZipInfo per entry)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from mesh.errors import MeshError, Reason
from services.archive.limits import Budget, limit_exceeded

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_Z64_LOCATOR = b"PK\x06\x07"
_Z64_LOCATOR_SIZE = 20
_Z64_EOCD = b"PK\x06\x06"
_Z64_EOCD_SIZE = 56
_CENTRAL = b"PK\x01\x02"
_CENTRAL_SIZE = 46
_MAX_COMMENT = 65535
_U32_MAX = 0xFFFFFFFF


def _corrupt(message: str) -> MeshError:
    return MeshError(Reason.CORRUPT_INPUT, f"The zip file is damaged: {message}.")


def _end_record(stream: BinaryIO, size: int) -> tuple[int, int, int]:
    """(declared entry count, central directory size, offset where the directory ends)."""
    tail_len = min(size, _EOCD_SIZE + _MAX_COMMENT + _Z64_LOCATOR_SIZE + _Z64_EOCD_SIZE)
    stream.seek(size - tail_len)
    tail = stream.read(tail_len)
    pos = tail.rfind(_EOCD, 0, len(tail) - _EOCD_SIZE + len(_EOCD))
    if pos < 0:
        raise _corrupt("no end of central directory record")
    count, cd_size = struct.unpack("<HI", tail[pos + 10 : pos + 16])
    cd_end = size - tail_len + pos
    locator = tail[pos - _Z64_LOCATOR_SIZE : pos] if pos >= _Z64_LOCATOR_SIZE else b""
    if locator.startswith(_Z64_LOCATOR):
        record_at = cd_end - _Z64_LOCATOR_SIZE - _Z64_EOCD_SIZE
        if record_at < 0:
            raise _corrupt("truncated ZIP64 end record")
        stream.seek(record_at)
        record = stream.read(_Z64_EOCD_SIZE)
        if not record.startswith(_Z64_EOCD):
            raise _corrupt("bad ZIP64 end record")
        count, cd_size = struct.unpack("<QQ", record[32:48])
        cd_end = record_at
    return count, cd_size, cd_end


def _zip64_size(extra: bytes) -> int | None:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        if tag == 0x0001 and length >= 8:
            return int(struct.unpack("<Q", extra[pos + 4 : pos + 12])[0])
        pos += 4 + length
    return None


def preflight(path: Path, budget: Budget) -> None:
    """Raises LIMIT_EXCEEDED for too many entries or too many declared bytes, CORRUPT_INPUT
    for a missing end record. Records it cannot parse are left for zipfile to judge."""
    limits = budget.limits
    size = path.stat().st_size
    with path.open("rb") as stream:
        # The declared count is not trusted either way (libzip's incons-file-count-overflow
        # declares 2**63 entries and holds one): the records themselves are counted.
        _, cd_size, cd_end = _end_record(stream, size)
        start = cd_end - cd_size
        if start < 0:
            raise _corrupt("central directory lies outside the file")
        stream.seek(start)
        count = 0
        declared_total = 0
        consumed = 0
        while consumed + _CENTRAL_SIZE <= cd_size:
            header = stream.read(_CENTRAL_SIZE)
            if len(header) < _CENTRAL_SIZE or not header.startswith(_CENTRAL):
                break
            uncompressed, name_len, extra_len, comment_len = struct.unpack("<IHHH", header[24:34])
            stream.seek(name_len, 1)
            extra = stream.read(extra_len)
            stream.seek(comment_len, 1)
            consumed += _CENTRAL_SIZE + name_len + extra_len + comment_len
            if uncompressed == _U32_MAX:
                uncompressed = _zip64_size(extra) or 0
            count += 1
            if count > limits.max_entries:
                raise limit_exceeded(
                    "max_entries",
                    limits.max_entries,
                    f"The archive has more than {limits.max_entries} entries.",
                )
            budget.check_declared(uncompressed)
            declared_total += uncompressed
            budget.check_total(declared_total)
