"""B3-B5: bombs trip the limits fast, and disk use never passes the byte cap."""

from __future__ import annotations

import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from mesh.errors import MeshError, Reason
from services.archive import ArchiveLimits, extract
from services.archive.limits import Budget
from tests.archive.conftest import corpus, disk_bytes

MIB = 1024 * 1024


def _unpack_outer(relative: str, dest: Path) -> dict[str, Path]:
    """The inner archives of a nested bomb, extracted with limits loose enough to pass."""
    loose = ArchiveLimits(max_ratio=1_000_000, max_total_bytes=100 * MIB)
    entries = extract(corpus(relative), "zip", dest, loose)
    return {entry.name: entry.path for entry in entries if entry.path is not None}


def _refusal(source: Path, dest: Path, limits: ArchiveLimits) -> MeshError:
    started = time.monotonic()
    with pytest.raises(MeshError) as refused:
        extract(source, "", dest, limits)
    assert time.monotonic() - started < 10
    assert refused.value.reason is Reason.LIMIT_EXCEEDED
    return refused.value


def test_nested_zip_bomb_outer_layer_trips_the_ratio(tmp_path: Path) -> None:
    error = _refusal(corpus("libzip/bigzero-zip.zip"), tmp_path / "job", ArchiveLimits())
    assert error.detail["limit"] == "max_ratio"
    assert disk_bytes(tmp_path / "job") <= MIB


def test_nested_zip_bomb_inner_4gib_entry_trips_before_filling_the_disk(tmp_path: Path) -> None:
    inner = _unpack_outer("libzip/bigzero-zip.zip", tmp_path / "outer")["bigzero.zip"]
    limits = ArchiveLimits(max_total_bytes=16 * MIB, max_ratio=1_000_000)
    error = _refusal(inner, tmp_path / "job", limits)
    assert error.detail["limit"] in ("max_total_bytes", "max_entry_bytes")
    assert disk_bytes(tmp_path / "job") <= 16 * MIB + MIB


@pytest.mark.parametrize("inner", ["manyfiles-65536.zip", "manyfiles-133000.zip"])
def test_entry_count_bomb_trips_at_the_entry_limit(tmp_path: Path, inner: str) -> None:
    source = _unpack_outer("libzip/manyfiles-zip.zip", tmp_path / "outer")[inner]
    error = _refusal(source, tmp_path / "job", ArchiveLimits(max_entries=1000))
    assert error.detail["limit"] == "max_entries"
    assert not any((tmp_path / "job").iterdir()) if (tmp_path / "job").exists() else True


def test_default_entry_limit_refuses_the_133000_entry_zip(tmp_path: Path) -> None:
    source = _unpack_outer("libzip/manyfiles-zip.zip", tmp_path / "outer")["manyfiles-133000.zip"]
    error = _refusal(source, tmp_path / "job", ArchiveLimits())
    assert error.detail["limit"] == "max_entries"


def _zeros_tgz(path: Path, size: int) -> None:
    """A tgz whose header honestly declares `size` bytes of zeros (tar has no size pre-check:
    only the streaming byte count can stop it)."""

    class Zeros:
        def __init__(self) -> None:
            self.left = size

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            self.left -= n
            return bytes(n)

    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        archive.addfile(info, Zeros())


def test_streamed_bytes_stop_at_the_total_cap_and_disk_stays_under_it(tmp_path: Path) -> None:
    source = tmp_path / "zeros.tgz"
    _zeros_tgz(source, 64 * MIB)
    limits = ArchiveLimits(max_total_bytes=8 * MIB, max_ratio=1_000_000)
    error = _refusal(source, tmp_path / "job", limits)
    assert error.detail["limit"] == "max_total_bytes"
    assert disk_bytes(tmp_path / "job") <= 8 * MIB + MIB


def test_streamed_bytes_trip_the_ratio_cap(tmp_path: Path) -> None:
    source = tmp_path / "zeros.tgz"
    _zeros_tgz(source, 32 * MIB)
    error = _refusal(source, tmp_path / "job", ArchiveLimits())
    assert error.detail["limit"] == "max_ratio"
    assert disk_bytes(tmp_path / "job") <= 200 * source.stat().st_size + MIB


def test_entry_byte_cap_applies_per_entry(tmp_path: Path) -> None:
    source = tmp_path / "zeros.tgz"
    _zeros_tgz(source, 4 * MIB)
    limits = ArchiveLimits(max_entry_bytes=MIB, max_ratio=1_000_000)
    assert _refusal(source, tmp_path / "job", limits).detail["limit"] == "max_entry_bytes"


def _overlapping_zip(path: Path, kernel_bytes: int, copies: int) -> None:
    """Fifield-style: one deflated kernel, many central-directory entries pointing at it."""
    data = zlib.compress(bytes(kernel_bytes), 9)[2:-4]
    crc = zlib.crc32(bytes(kernel_bytes))
    name = b"k"
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), kernel_bytes, 1, 0
    )
    body = local + name + data
    central = b""
    for i in range(copies):
        entry_name = f"f{i}".encode()
        central += (
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(data),
                kernel_bytes,
                len(entry_name),
                0,
                0,
                0,
                0,
                0,
                0,
            )
            + entry_name
        )
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, copies, copies, len(central), len(body), 0)
    path.write_bytes(body + central + end)


def test_overlapping_entry_bomb_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "overlap.zip"
    _overlapping_zip(source, 4 * MIB, 64)
    with zipfile.ZipFile(source) as check:
        assert len(check.infolist()) == 64
    started = time.monotonic()
    with pytest.raises(MeshError) as refused:
        extract(source, "zip", tmp_path / "job", ArchiveLimits())
    assert refused.value.reason in (Reason.LIMIT_EXCEEDED, Reason.CORRUPT_INPUT)
    assert time.monotonic() - started < 10
    assert disk_bytes(tmp_path / "job") <= 200 * source.stat().st_size + MIB


def test_budget_refuses_the_chunk_that_would_cross_the_cap() -> None:
    budget = Budget(ArchiveLimits(max_total_bytes=100, max_ratio=1e9), input_bytes=10)
    budget.charge(0, 60)
    with pytest.raises(MeshError):
        budget.charge(60, 41)
    assert budget.total_bytes == 60


def test_small_highly_compressible_archives_pass_the_ratio_cap() -> None:
    budget = Budget(ArchiveLimits(), input_bytes=30)
    budget.charge(0, 512 * 1024)
    assert budget.total_bytes == 512 * 1024
