"""Turning whatever a decoder raises into the one typed error a user sees."""

from __future__ import annotations

import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import TypeVar

from mesh.errors import MeshError, Reason

T = TypeVar("T")

# What zipfile, tarfile, gzip/bz2/lzma and libarchive raise on hostile or damaged input.
# libarchive.ArchiveError subclasses Exception only; it is matched by name below so this
# module does not need the shared library to load.
DECODER_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    IndexError,
    KeyError,
    OverflowError,
)

_PASSWORD_WORDS = ("password", "passphrase", "encrypt")


def as_mesh_error(exc: BaseException) -> MeshError:
    text = str(exc).lower()
    if any(word in text for word in _PASSWORD_WORDS):
        return MeshError(
            Reason.PASSWORD_REQUIRED,
            "The archive is encrypted; password-protected archives are not supported.",
        )
    if "unrecognized archive format" in text:
        return MeshError(
            Reason.UNSUPPORTED_FORMAT,
            "This archive variant is not supported (for example RAR 1.x).",
        )
    if "unsupported compression" in text or "compression method" in text:
        return MeshError(
            Reason.UNSUPPORTED_FORMAT,
            "The archive uses a compression method this service cannot read.",
        )
    return MeshError(Reason.CORRUPT_INPUT, "The archive is damaged or truncated.")


def _is_decoder_error(exc: Exception) -> bool:
    return isinstance(exc, DECODER_ERRORS) or type(exc).__name__ == "ArchiveError"


def translated(source: Iterator[T]) -> Iterator[T]:
    """Yields from a decoder, turning its failures (never our MeshErrors) into MeshErrors."""
    try:
        yield from source
    except MeshError:
        raise
    except Exception as exc:
        if _is_decoder_error(exc):
            raise as_mesh_error(exc) from None
        raise
