"""Which sink writes which output format, and what each input kind becomes when the client
keeps its format."""

from __future__ import annotations

from pathlib import Path

from mesh.errors import MeshError, Reason
from mesh.formats import Family, outputs_of
from services.archive.rar import RarSink
from services.archive.sevenzip import SevenZipSink
from services.archive.writers import Sink, StreamSink, TarSink, ZipSink

OUTPUTS = outputs_of(Family.ARCHIVE)
SINGLE_STREAM_OUTPUTS = ("gz", "bz2", "xz")

# Input kind (detect.ARCHIVE_KINDS) -> output format for "keep the input's format".
KEEP_FORMAT = {
    "zip": "zip",
    "tar": "tar",
    "tgz": "tgz",
    "tbz2": "bz2",
    "txz": "xz",
    "gz": "gz",
    "bz2": "bz2",
    "xz": "xz",
    "7z": "7z",
    "rar": "rar",
}


def open_sink(
    fmt: str,
    output: Path,
    compression: int,
    scratch: Path,
    *,
    single: bool,
    rar_binary: str | None = None,
) -> Sink:
    """A sink for `fmt`. gz/bz2/xz hold one file when `single`, else a tar stream."""
    if fmt == "zip":
        return ZipSink(output, compression)
    if fmt == "tar":
        return TarSink(output, "", compression, scratch)
    if fmt == "tgz":
        return TarSink(output, "gz", compression, scratch)
    if fmt == "7z":
        return SevenZipSink(output, compression, scratch)
    if fmt in SINGLE_STREAM_OUTPUTS:
        if single:
            return StreamSink(output, fmt, compression)
        return TarSink(output, fmt, compression, scratch)
    if fmt == "rar":
        return RarSink(output, compression, scratch, rar_binary)
    raise MeshError(
        Reason.UNSUPPORTED_PAIR,
        f"The archive service writes {', '.join(OUTPUTS)}, not {fmt!r}.",
    )
