from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from mesh.errors import MeshError, Reason
from mesh.formats import is_tar_header
from services.archive.detect import detect, require_archive
from tests.archive.conftest import corpus


@pytest.mark.parametrize(
    ("relative", "hint", "kind"),
    [
        ("pillow/hopper.tar", "", "tar"),  # v7 tar: no ustar magic
        ("golang/neg-size.tar", "", "tar"),  # hostile, but its header checksum is valid
        ("small/tar.tar", "tar", "tar"),
        ("libarchive/test_compat_gtar_1.tgz", "gz", "tgz"),
        ("small/gzip.gz", "gz", "gz"),
        ("small/bzip2.bz2", "bz2", "bz2"),
        ("small/rar5.rar", "rar", "rar"),
        ("libarchive/test_read_format_7zip_ppmd_small_block.7z", "7z", "7z"),
        ("libzip/junk-at-start.zip", "", "zip"),
        ("pillow/hopper.jpg", "jpg", None),
    ],
)
def test_archives_are_recognised_by_content(relative: str, hint: str, kind: str | None) -> None:
    assert detect(corpus(relative), hint) == kind


def _tar_bytes(compression: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:  # type: ignore[call-overload]
        info = tarfile.TarInfo("a.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    return buffer.getvalue()


@pytest.mark.parametrize(("compression", "kind"), [("gz", "tgz"), ("bz2", "tbz2"), ("xz", "txz")])
def test_compressed_tar_is_told_apart_from_a_compressed_file(
    tmp_path: Path, compression: str, kind: str
) -> None:
    tarred = tmp_path / "a"
    tarred.write_bytes(_tar_bytes(compression))
    assert detect(tarred) == kind


def test_gzipped_text_is_a_single_stream(tmp_path: Path) -> None:
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"hello " * 1000))
    assert detect(path) == "gz"


def test_zip_found_only_by_end_record_is_ignored_when_sniffed_as_something_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(
        corpus("pillow/hopper.jpg").read_bytes() + corpus("small/zip.zip").read_bytes()
    )
    assert detect(path, "jpg") is None
    assert detect(path, "") == "zip"


def test_random_bytes_are_not_a_tar_header() -> None:
    assert not is_tar_header(b"\x00" * 512)
    assert not is_tar_header(bytes(range(256)) * 2)


def test_non_archive_is_refused_as_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("plain text")
    with pytest.raises(MeshError) as refused:
        require_archive(path, "")
    assert refused.value.reason is Reason.UNSUPPORTED_FORMAT
