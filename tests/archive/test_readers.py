"""A11: every archive in the corpus either yields its true contents or a typed MeshError."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mesh.errors import MeshError, Reason
from mesh.formats import sniff
from services.archive import ArchiveLimits, extract
from tests.archive.conftest import CORPUS, corpus, links_under

LIMITS = ArchiveLimits(max_entries=1000, max_total_bytes=64 * 1024**2)

# file -> {name: size} of regular files extracted (skipped entries are not listed here).
CONTENTS: dict[str, dict[str, int]] = {
    "libzip/zip64.zip": {"-": 2},
    "libzip/streamed-zip64.zip": {"-": 2},
    "libzip/incons-file-count-overflow.zip": {"-": 2},
    "libzip/test-utf8.zip": {"ÄÖÜäöüßćçĉéèêëē": 0},
    "libzip/test-utf8-unmarked.zip": {"ÄÖÜäöüßćçĉéèêëē": 0},
    "libzip/testfile-UTF8.zip": {"ÄÖÜßäöü": 0},
    "libzip/testbzip2.zip": {"abac-repeat.txt": 60},
    "libzip/testfile-lzma.zip": {"abac-repeat.txt": 64},
    "libzip/testfile-xz.zip": {"abac-repeat.txt": 64},
    "libzip/testfile-zstd.zip": {"abac-repeat.txt": 64},
    "libzip/junk-at-start.zip": {"test": 5, "testdir/test2": 5},
    "libzip/junk-at-end.zip": {"test": 5, "testdir/test2": 5},
    "libzip/testempty.zip": {},
    "libzip/testfile-long-comment.zip": {"testfile.txt": 0},
    "libzip/zip-in-archive-comment.zip": {"testfile.txt": 0},
    "libzip/filename_duplicate.zip": {"test1": 6},
    "libarchive/test_read_format_7zip_ppmd_small_block.7z": {
        f"test{i}.dat": 1024 for i in range(4)
    },
    "libarchive/test_read_format_rar5_unicode.rar": {"𝒻𝒾𝓁𝑒.txt": 33},
    "libarchive/test_read_format_rar_unicode.rar": {
        "表だよ/新しいフォルダ/新規テキスト ドキュメント.txt": 0,
        "表だよ/漢字長いファイル名long-filename-in-漢字.txt": 5,
    },
    "libarchive/test_read_format_zip_symlink_deflate.zip": {"file": 900},
    "pillow/hopper.tar": {"hopper.jpg": 6412, "hopper.png": 30605},
    "small/tar.tar": {"n": 0},
    "small/rar4.rar": {"n": 0},
    "small/rar5.rar": {"n": 0},
    "small/zip.zip": {},
    "small/gzip-name.gz": {"n": 0},
    "small/gzip.gz": {"gzip": 0},
    "small/bzip2.bz2": {"bzip2": 0},
}

REFUSED: dict[str, Reason] = {
    "libzip/encrypt.zip": Reason.PASSWORD_REQUIRED,
    "libzip/encrypt-aes128.zip": Reason.PASSWORD_REQUIRED,
    "libzip/encrypt-aes256.zip": Reason.PASSWORD_REQUIRED,
    "libzip/broken.zip": Reason.PASSWORD_REQUIRED,  # one entry is ZipCrypto-encrypted
    "libzip/testfile-truncated.zip": Reason.CORRUPT_INPUT,
    "libzip/incons-cdoffset.zip": Reason.CORRUPT_INPUT,
    "libzip/incons-local-filename.zip": Reason.CORRUPT_INPUT,
    "libarchive/test_read_format_7zip_malformed_header_toobig.7z": Reason.CORRUPT_INPUT,
    "golang/neg-size.tar": Reason.CORRUPT_INPUT,
    "small/rar14.rar": Reason.UNSUPPORTED_FORMAT,
    "libzip/bigzero-zip.zip": Reason.LIMIT_EXCEEDED,  # 10 KB holding a 4 MB zip: ratio 400
}


def _run(relative: str, dest: Path) -> list[tuple[str, int, str | None]]:
    path = corpus(relative)
    hint = sniff(path.read_bytes()[:4096]).format
    return [(e.name, e.size, e.skipped_reason) for e in extract(path, hint, dest, LIMITS)]


@pytest.mark.parametrize("relative", sorted(CONTENTS))
def test_corpus_archive_extracts_its_true_contents(relative: str, canary: Path) -> None:
    entries = _run(relative, canary)
    files = {name: size for name, size, reason in entries if reason is None}
    assert files == CONTENTS[relative]
    for name, size in files.items():
        assert (canary / name).stat().st_size == size
    assert links_under(canary) == []


@pytest.mark.parametrize("relative", sorted(REFUSED))
def test_corpus_archive_is_refused_with_a_typed_reason(relative: str, canary: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MeshError) as refused:
        _run(relative, canary)
    assert refused.value.reason is REFUSED[relative]
    assert time.monotonic() - started < 2


def test_rar5_links_are_reported_and_never_created(canary: Path) -> None:
    entries = _run("libarchive/test_read_format_rar5_unicode.rar", canary)
    skipped = {name: reason for name, _, reason in entries if reason}
    assert skipped == {
        "𝒽𝒶𝓇𝒹𝓁𝒾𝓃𝓀.txt": "hard link not extracted",
        "𝓈𝓎𝓂𝓁𝒾𝓃𝓀.txt": "symbolic link not extracted",
        "𝒹𝒾𝓇_𝓈𝓎𝓂𝓁𝒾𝓃𝓀": "symbolic link not extracted",
    }
    assert links_under(canary) == []
    assert (canary / "𝒹𝒾𝓇").is_dir()


def test_gtar_long_symlink_is_skipped_and_long_name_kept(canary: Path) -> None:
    entries = _run("libarchive/test_compat_gtar_1.tgz", canary)
    assert [(len(name), reason) for name, _, reason in entries] == [
        (200, None),
        (200, "symbolic link not extracted"),
    ]
    assert links_under(canary) == []


def test_control_characters_in_zip_names_are_replaced(canary: Path) -> None:
    entries = _run("libzip/test-cp437.zip", canary)
    names = [name for name, _, reason in entries if reason is None]
    assert len(names) == 16
    assert all(ch >= " " for name in names for ch in name)


def test_duplicate_and_empty_names_are_reported(canary: Path) -> None:
    duplicate = _run("libzip/filename_duplicate.zip", canary / "a")
    assert [reason for _, _, reason in duplicate] == [None, "duplicate name"]
    empty = _run("libzip/filename_empty.zip", canary / "b")
    assert [reason for _, _, reason in empty] == ["empty name"]


def test_every_corpus_archive_ends_in_contents_or_mesh_error(tmp_path: Path) -> None:
    """The D3-style sweep: no other exception type may escape for any archive in the corpus."""
    candidates = [
        *CORPUS.glob("libzip/*"),
        *CORPUS.glob("libarchive/*"),
        *(p for p in CORPUS.glob("small/*") if p.suffix in (".zip", ".tar", ".gz", ".bz2", ".rar")),
        CORPUS / "pillow/hopper.tar",
        CORPUS / "golang/neg-size.tar",
    ]
    assert len(candidates) > 40
    outcomes: dict[str, str] = {}
    for index, path in enumerate(sorted(candidates)):
        hint = sniff(path.read_bytes()[:4096]).format
        try:
            extract(path, hint, tmp_path / str(index), LIMITS)
            outcomes[path.name] = "ok"
        except MeshError as error:
            outcomes[path.name] = error.reason.value
    assert len(outcomes) == len(candidates)
    assert list(outcomes.values()).count("ok") >= 30


def _tool_names(*command: str) -> list[str]:
    listing = subprocess.run(command, capture_output=True, check=True, timeout=30).stdout
    return listing.decode("utf-8").splitlines()


def test_zip_with_unicode_path_extra_reads_as_unzip_and_7z_read_it(canary: Path) -> None:
    """Local headers spell the names in ASCII, the central directory in cp437, and both carry
    the same 0x7075 Unicode Path: unzip and 7z show the UTF-8 names, bsdtar the same bytes."""
    relative = "libarchive/test_read_format_zip_7075_utf8_paths.zip"
    path = corpus(relative)
    entries = _run(relative, canary)
    names = [name for name, _, reason in entries if reason is None]
    assert names == _tool_names("unzip", "-Z1", str(path))
    seven = [
        line.removeprefix("Path = ")
        for line in _tool_names("7z", "l", "-slt", "-sccUTF-8", str(path))
        if line.startswith("Path = ")
    ][1:]  # the first Path is the archive itself
    assert names == seven
    assert names == ["File 1.txt", "File 2 - ö.txt", "File 3 - ä.txt", "File 4 - å.txt"]
    contents = subprocess.run(
        ["bsdtar", "-xOf", str(path)], capture_output=True, check=True, timeout=30
    ).stdout
    assert b"".join((canary / name).read_bytes() for name in names) == contents
