"""B6/B7: hostile names and links never create anything outside the job directory, and no
link, hard link or device node is ever created inside it."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from mesh.errors import MeshError, Reason
from services.archive import ArchiveLimits, extract
from tests.archive.conftest import links_under

GOOD = ("good/ok.txt", b"fine")


def _evil_names(canary: Path) -> list[str]:
    return [
        "../evil",
        "a/../../evil",
        f"{canary.parent}/abs-evil",
        "/abs/evil",
        "..\\evil",
        "C:\\evil",
        "x" * 5000,
    ]


def _tar(path: Path, names: list[str], extra: list[tarfile.TarInfo] = ()) -> None:  # type: ignore[assignment]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for info in extra:
            archive.addfile(info, io.BytesIO(b"through the link") if info.isreg() else None)
        for name in [*names, GOOD[0]]:
            info = tarfile.TarInfo(name)
            data = GOOD[1] if name == GOOD[0] else b"evil"
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _zip(path: Path, names: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"evil")
        archive.writestr("evilXnul.txt", b"evil")
        archive.writestr(*GOOD)
    # zipfile cuts names at NUL when writing, so the NUL is patched into the raw headers.
    path.write_bytes(path.read_bytes().replace(b"evilXnul", b"evil\x00nul"))


def _seven_zip(path: Path, names: list[str]) -> None:
    with py7zr.SevenZipFile(path, "w") as archive:
        for index, name in enumerate(names):
            archive.writestr(b"evil", f"placeholder{index}")
            # py7zr refuses unsafe names; rename in the header it is about to write.
            archive.header.files_info.files[-1]["filename"] = name
        archive.writestr(GOOD[1], GOOD[0])


def _assert_only_good_extracted(entries: list, canary: Path) -> None:  # type: ignore[type-arg]
    written = [entry for entry in entries if entry.skipped_reason is None]
    assert [(entry.name, entry.size) for entry in written] == [(GOOD[0], len(GOOD[1]))]
    assert (canary / GOOD[0]).read_bytes() == GOOD[1]
    assert all(entry.path is None for entry in entries if entry.skipped_reason)
    assert links_under(canary) == []
    assert not Path("/abs/evil").exists()


def test_tar_slip_names_are_skipped_and_reported(canary: Path, tmp_path: Path) -> None:
    source = tmp_path / "slip.tar"
    names = _evil_names(canary)
    _tar(source, names)
    entries = extract(source, "tar", canary, ArchiveLimits())
    _assert_only_good_extracted(entries, canary)
    assert len([e for e in entries if e.skipped_reason]) == len(names)


def test_zip_slip_names_are_skipped_and_reported(canary: Path, tmp_path: Path) -> None:
    source = tmp_path / "slip.zip"
    _zip(source, _evil_names(canary))
    entries = extract(source, "zip", canary, ArchiveLimits())
    skipped = [entry for entry in entries if entry.skipped_reason]
    # zipfile itself cuts the patched name at the NUL, leaving a harmless "evil".
    harmless = [entry for entry in entries if entry.name == "evil" and not entry.skipped_reason]
    assert len(skipped) == len(_evil_names(canary))
    assert all(entry.path is None or entry.path.parent == canary for entry in harmless)
    assert (canary / GOOD[0]).read_bytes() == GOOD[1]
    assert links_under(canary) == []


def test_7z_slip_names_are_skipped_and_reported(canary: Path, tmp_path: Path) -> None:
    source = tmp_path / "slip.7z"
    # NUL ends a name in the 7z header itself, so it cannot be smuggled into one.
    names = _evil_names(canary)
    _seven_zip(source, names)
    entries = extract(source, "7z", canary, ArchiveLimits())
    _assert_only_good_extracted(entries, canary)


def test_tar_symlink_then_write_through_it_creates_nothing_outside(
    canary: Path, tmp_path: Path
) -> None:
    link = tarfile.TarInfo("escape")
    link.type = tarfile.SYMTYPE
    link.linkname = str(canary.parent)
    through = tarfile.TarInfo("escape/through.txt")
    through.size = len(b"through the link")
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "/etc/passwd"
    device = tarfile.TarInfo("null")
    device.type = tarfile.CHRTYPE
    device.devmajor, device.devminor = 1, 3
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    source = tmp_path / "links.tar"
    _tar(source, [], [link, through, hard, device, fifo])

    entries = extract(source, "tar", canary, ArchiveLimits())

    reasons = {entry.name: entry.skipped_reason for entry in entries}
    assert reasons["escape"] == "symbolic link not extracted"
    assert reasons["hard"] == "hard link not extracted"
    assert "special file" in (reasons["null"] or "")
    assert "special file" in (reasons["pipe"] or "")
    # The write-through entry lands in a real directory inside the job dir, or nowhere.
    assert not (canary.parent / "through.txt").exists()
    assert not (canary / "escape").is_symlink()
    assert links_under(canary) == []
    kinds = {os.lstat(p).st_mode & 0o170000 for p in canary.rglob("*")}
    assert kinds <= {0o100000, 0o040000}


def test_7z_symlink_then_write_through_it_creates_nothing_outside(
    canary: Path, tmp_path: Path
) -> None:
    (tmp_path / "escape").symlink_to(canary.parent)
    source = tmp_path / "links.7z"
    with py7zr.SevenZipFile(source, "w") as archive:
        archive.write(tmp_path / "escape", "escape")
        archive.writestr(b"through the link", "escape/through.txt")
    entries = extract(source, "7z", canary, ArchiveLimits())
    assert {e.name: e.skipped_reason for e in entries}["escape"] == "symbolic link not extracted"
    assert not (canary.parent / "through.txt").exists()
    assert links_under(canary) == []


def test_file_where_a_directory_must_go_is_reported_not_followed(
    canary: Path, tmp_path: Path
) -> None:
    source = tmp_path / "clash.tar"
    with tarfile.open(source, "w") as archive:
        for name in ("a", "a/b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    entries = extract(source, "tar", canary, ArchiveLimits())
    assert [(e.name, e.skipped_reason) for e in entries] == [
        ("a", None),
        ("a/b", "path taken by another entry"),
    ]


def test_preexisting_link_in_dest_is_never_written_through(canary: Path, tmp_path: Path) -> None:
    (canary / "good").symlink_to(canary.parent)
    source = tmp_path / "plain.tar"
    _tar(source, [])
    entries = extract(source, "tar", canary, ArchiveLimits())
    assert entries[0].skipped_reason == "path taken by another entry"
    assert not (canary.parent / "ok.txt").exists()
    (canary / "good").unlink()


def test_tar_entry_limit_trips_while_streaming(tmp_path: Path) -> None:
    source = tmp_path / "many.tar"
    with tarfile.open(source, "w") as archive:
        for index in range(300):
            archive.addfile(tarfile.TarInfo(f"f{index}"), io.BytesIO(b""))
    with pytest.raises(MeshError) as refused:
        extract(source, "tar", tmp_path / "job", ArchiveLimits(max_entries=100))
    assert refused.value.reason is Reason.LIMIT_EXCEEDED
    assert refused.value.detail["limit"] == "max_entries"
    assert len(list((tmp_path / "job").iterdir())) == 100


@pytest.mark.parametrize("cut", [100, 600, 1500])
def test_truncated_tgz_fails_typed_and_fast(tmp_path: Path, cut: int) -> None:
    whole = tmp_path / "whole.tgz"
    with tarfile.open(whole, "w:gz") as archive:
        info = tarfile.TarInfo("data.bin")
        payload = os.urandom(4096)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    cut_file = tmp_path / "cut.tgz"
    cut_file.write_bytes(whole.read_bytes()[:cut])
    with pytest.raises(MeshError) as refused:
        extract(cut_file, "gz", tmp_path / "job", ArchiveLimits())
    assert refused.value.reason is Reason.CORRUPT_INPUT
