"""Writers: one Sink per output format, fed entry by entry with chunk streams.

zip streams each entry through zipfile's writer (ZIP64 when a size is unknown or large);
tar streams entries whose size is known and spools the rest to scratch (a tar header needs
the size first); gz/bz2/xz compress exactly one stream. 7z lives in sevenzip.py.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import Protocol

from mesh.errors import MeshError, Reason
from services.archive import levels

_ZIP64_THRESHOLD = 2**31 - 1
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)


class Sink(Protocol):
    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None: ...

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None: ...

    def close(self) -> None: ...


def spool(data: Iterator[bytes], scratch: Path) -> Path:
    """Writes a chunk stream to a scratch file (for formats that need sizes or seeking)."""
    with tempfile.NamedTemporaryFile(dir=scratch, delete=False, prefix="entry-") as out:
        for chunk in data:
            out.write(chunk)
    return Path(out.name)


def _dos_time(mtime: float | None) -> tuple[int, int, int, int, int, int]:
    if mtime is None:
        return _DOS_EPOCH
    try:
        parts = time.localtime(mtime)[:6]
    except (OverflowError, OSError, ValueError):
        return _DOS_EPOCH
    if parts[0] < 1980:
        return _DOS_EPOCH
    if parts[0] > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])


class ZipSink:
    def __init__(self, output: Path, compression: int) -> None:
        self._level = levels.deflate_level(compression)
        self._zip = zipfile.ZipFile(
            output, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=self._level
        )

    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None:
        info = zipfile.ZipInfo(name + "/", _dos_time(mtime))
        info.external_attr = ((stat.S_IFDIR | (mode or 0o755)) << 16) | 0x10
        self._zip.writestr(info, b"")

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None:
        info = zipfile.ZipInfo(name, _dos_time(mtime))
        info.compress_type = zipfile.ZIP_DEFLATED
        # zipfile only applies its own compresslevel to names, not to a ZipInfo we build.
        setattr(info, "_compresslevel", self._level)  # noqa: B010
        info.external_attr = (stat.S_IFREG | (mode or 0o644)) << 16
        big = size is None or size > _ZIP64_THRESHOLD
        with self._zip.open(info, "w", force_zip64=big) as out:
            for chunk in data:
                out.write(chunk)

    def close(self) -> None:
        self._zip.close()


class _ExactReader:
    """A file-like view of a chunk stream that must hold exactly `size` bytes (tar needs it)."""

    def __init__(self, data: Iterator[bytes], size: int) -> None:
        self._data = data
        self._left = size
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        while len(self._buffer) < want:
            chunk = next(self._data, None)
            if chunk is None:
                raise MeshError(
                    Reason.CORRUPT_INPUT, "An archive entry is shorter than its header says."
                )
            self._buffer += chunk
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        self._left -= len(out)
        return out

    def finish(self) -> None:
        if self._buffer or next(self._data, b""):
            raise MeshError(
                Reason.CORRUPT_INPUT, "An archive entry is longer than its header says."
            )


def _open_compressor(output: Path, compressor: str, compression: int, name: str) -> BufferedIOBase:
    """The output file wrapped in gz, bz2 or xz ('' for none); closing it closes the file."""
    if compressor == "gz":
        # GzipFile stores `filename` in the header (FNAME) but never closes a passed fileobj.
        return _OwningGzip(output.open("wb"), name, levels.deflate_level(compression))
    if compressor == "bz2":
        return bz2.BZ2File(output, "wb", compresslevel=levels.bzip2_level(compression))
    if compressor == "xz":
        return lzma.LZMAFile(output, "wb", preset=levels.lzma_preset(compression))
    return output.open("wb")


class _OwningGzip(gzip.GzipFile):
    def __init__(self, raw: BufferedIOBase, name: str, level: int) -> None:
        super().__init__(filename=name, mode="wb", compresslevel=level, fileobj=raw)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class TarSink:
    """tar (PAX headers: long and Unicode names), optionally inside gz, bz2 or xz."""

    def __init__(self, output: Path, compressor: str, compression: int, scratch: Path) -> None:
        self._scratch = scratch
        self._stream = _open_compressor(output, compressor, compression, "")
        self._tar = tarfile.TarFile(fileobj=self._stream, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, mtime: float | None, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mtime = int(mtime) if mtime is not None and mtime >= 0 else int(time.time())
        info.mode = mode
        return info

    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None:
        info = self._info(name, mtime, mode or 0o755)
        info.type = tarfile.DIRTYPE
        self._tar.addfile(info)

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None:
        info = self._info(name, mtime, mode or 0o644)
        if size is not None:
            info.size = size
            reader = _ExactReader(data, size)
            self._tar.addfile(info, reader)
            reader.finish()
            return
        spooled = spool(data, self._scratch)
        try:
            info.size = spooled.stat().st_size
            with spooled.open("rb") as stream:
                self._tar.addfile(info, stream)
        finally:
            spooled.unlink()

    def close(self) -> None:
        try:
            self._tar.close()
        finally:
            self._stream.close()


class StreamSink:
    """gz, bz2 or xz around exactly one file."""

    def __init__(self, output: Path, compressor: str, compression: int) -> None:
        self._output = output
        self._compressor = compressor
        self._compression = compression
        self._written = False

    def add_dir(self, name: str, mtime: float | None, mode: int | None) -> None:
        """Directories have no place in a single compressed stream."""

    def add_file(
        self,
        name: str,
        data: Iterator[bytes],
        size: int | None,
        mtime: float | None,
        mode: int | None,
    ) -> None:
        if self._written:
            raise MeshError(
                Reason.UNSUPPORTED_PAIR,
                f"{self._compressor} holds a single file; choose tgz, zip or 7z for several.",
            )
        self._written = True
        base = name.rsplit("/", 1)[-1]
        with _open_compressor(self._output, self._compressor, self._compression, base) as out:
            for chunk in data:
                out.write(chunk)

    def close(self) -> None:
        if not self._written:
            with _open_compressor(self._output, self._compressor, self._compression, ""):
                pass
