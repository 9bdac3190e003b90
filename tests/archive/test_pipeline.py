"""convert / pack_directory: every output format is checked by an independent tool, and
repacking keeps names, directories and modification times where the target holds them."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.archive import ArchiveLimits, convert, pack_directory
from tests.archive.conftest import corpus, tool

TREE = {
    "docs/readme.txt": b"hello archive\n" * 50,
    "docs/deep/nested/ünïcødé 表.txt": b"unicode",
    "bin/random.bin": os.urandom(20_000),
    "empty.txt": b"",
}
MTIME = 1_600_000_000
ROOT = Path(__file__).resolve().parents[2]


def _source_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("docs/", (2020, 9, 13, 12, 26, 40)), b"")
        for name, data in TREE.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 9, 13, 12, 26, 40)), data)
    return path


def _listing(path: Path) -> set[str]:
    result = subprocess.run(
        [tool("bsdtar"), "-tf", str(path)], capture_output=True, text=True, check=True
    )
    return {line.rstrip("/") for line in result.stdout.splitlines()}


def _bsdtar_extract(path: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run([tool("bsdtar"), "-xf", str(path), "-C", str(dest)], check=True)


def _convert(source: Path, tmp_path: Path, fmt: str, **kwargs: object) -> Path:
    output = tmp_path / f"out.{fmt}"
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    outcome = convert(
        source,
        output,
        kwargs.pop("source_format", "zip"),  # type: ignore[arg-type]
        kwargs.pop("filename", "upload.zip"),  # type: ignore[arg-type]
        ConversionOptions(format=fmt),
        ArchiveLimits(),
        scratch,
    )
    assert outcome.format == fmt
    assert list(scratch.iterdir()) == []
    return output


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz", "7z", "xz", "bz2", "gz"])
def test_repacked_zip_keeps_names_dirs_and_bytes(tmp_path: Path, fmt: str) -> None:
    output = _convert(_source_zip(tmp_path / "in.zip"), tmp_path, fmt)
    assert set(TREE) | {"docs", "docs/deep", "docs/deep/nested"} >= _listing(output) >= set(TREE)
    _bsdtar_extract(output, tmp_path / "check")
    for name, data in TREE.items():
        assert (tmp_path / "check" / name).read_bytes() == data
    stamp = (tmp_path / "check" / "docs/readme.txt").stat().st_mtime
    assert abs(stamp - MTIME) < 2 * 86400  # zip stores local time


@pytest.mark.parametrize(
    ("fmt", "command"),
    [
        ("7z", ("7zz", "7z", "7za")),
        ("zip", ("7zz", "7z", "7za")),
        ("tgz", ("gzip",)),
        ("gz", ("gzip",)),
        ("xz", ("xz",)),
        ("bz2", ("bzip2",)),
    ],
)
def test_outputs_pass_the_reference_tools_integrity_test(
    tmp_path: Path, fmt: str, command: tuple[str, ...]
) -> None:
    output = _convert(_source_zip(tmp_path / "in.zip"), tmp_path, fmt)
    binary = tool(*command)
    args = [binary, "t", str(output)] if "7z" in binary else [binary, "-t", str(output)]
    assert subprocess.run(args, capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize("fmt", ["zip", "tar", "tgz", "7z"])
def test_plain_file_is_wrapped_as_one_entry_named_after_the_upload(
    tmp_path: Path, fmt: str
) -> None:
    source = corpus("pillow/hopper.jpg")
    output = _convert(source, tmp_path, fmt, source_format="jpg", filename="../../hop per.jpg")
    assert _listing(output) == {"hop per.jpg"}
    _bsdtar_extract(output, tmp_path / "check")
    assert (tmp_path / "check/hop per.jpg").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("fmt", ["gz", "bz2", "xz"])
def test_plain_file_is_compressed_as_one_stream(tmp_path: Path, fmt: str) -> None:
    source = corpus("pillow/hopper.png")
    output = _convert(source, tmp_path, fmt, source_format="png", filename="hopper.png")
    decompress = {"gz": "gzip", "bz2": "bzip2", "xz": "xz"}[fmt]
    result = subprocess.run([tool(decompress), "-dc", str(output)], capture_output=True, check=True)
    assert result.stdout == source.read_bytes()


def test_gzip_keeps_the_member_name_in_its_header(tmp_path: Path) -> None:
    source = corpus("pillow/hopper.png")
    output = _convert(source, tmp_path, "gz", source_format="png", filename="hopper.png")
    listing = [tool("gzip"), "-lN", str(output)]
    result = subprocess.run(listing, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1].endswith("hopper.png")


def test_single_gzip_stream_repacks_to_zip_under_its_stored_name(tmp_path: Path) -> None:
    source = tmp_path / "upload.gz"
    with gzip.GzipFile(filename="report.csv", mode="wb", fileobj=source.open("wb")) as out:
        out.write(b"a,b\n1,2\n")
    output = _convert(source, tmp_path, "zip", source_format="gz", filename="upload.gz")
    with zipfile.ZipFile(output) as archive:
        assert archive.namelist() == ["report.csv"]
        assert archive.read("report.csv") == b"a,b\n1,2\n"


def test_unnamed_gzip_member_is_named_from_the_filename(tmp_path: Path) -> None:
    source = tmp_path / "blob"
    source.write_bytes(gzip.compress(b"data", mtime=0))
    with gzip.open(source) as check:
        check.read()
    output = _convert(source, tmp_path, "tar", source_format="gz", filename="notes.txt.gz")
    assert _listing(output) == {"notes.txt"}


def test_compress_job_keeps_the_format_at_the_strongest_setting(tmp_path: Path) -> None:
    source = tmp_path / "in.tgz"
    with tarfile.open(source, "w:gz", compresslevel=1) as archive:
        data = b"compressible text " * 20_000
        info = tarfile.TarInfo("a.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    output = tmp_path / "out"
    outcome = convert(
        source, output, "gz", "in.tgz", ConversionOptions(format=""), ArchiveLimits(), tmp_path
    )
    assert outcome.format == "tgz"
    assert outcome.applied_quality == 100
    assert output.stat().st_size < source.stat().st_size
    assert _listing(output) == {"a.txt"}


def test_rar_output_without_an_encoder_is_an_unsupported_pair(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as refused:
        _convert(_source_zip(tmp_path / "in.zip"), tmp_path, "rar")
    assert refused.value.reason is Reason.UNSUPPORTED_PAIR
    assert "rar encoder" in refused.value.message
    assert not (tmp_path / "out.rar").exists()


def test_non_archive_output_is_left_to_the_fan_out(tmp_path: Path) -> None:
    with pytest.raises(MeshError) as refused:
        _convert(_source_zip(tmp_path / "in.zip"), tmp_path, "png")
    assert refused.value.reason is Reason.UNSUPPORTED_PAIR


def test_repacking_a_hostile_tar_writes_only_safe_names(tmp_path: Path) -> None:
    source = tmp_path / "evil.tar"
    with tarfile.open(source, "w", format=tarfile.PAX_FORMAT) as archive:
        for name in ("../evil", "/abs/evil", "ok.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    output = _convert(source, tmp_path, "zip", source_format="tar", filename="evil.tar")
    # What was left out is listed in the archive's report, as a fan-out lists it.
    assert _listing(output) == {"ok.txt", "conversion-report.json"}
    with zipfile.ZipFile(output) as repacked:
        report = json.loads(repacked.read("conversion-report.json"))
    assert {entry["name"] for entry in report} == {"../evil", "/abs/evil", "link"}
    assert all(entry["status"] == "skipped" and entry["reason"] for entry in report)


def test_failed_conversion_leaves_no_partial_output(tmp_path: Path) -> None:
    output = tmp_path / "out.zip"
    with pytest.raises(MeshError):
        convert(
            corpus("libzip/bigzero-zip.zip"),
            output,
            "zip",
            "bomb.zip",
            ConversionOptions(format="tar"),
            ArchiveLimits(),
            tmp_path,
        )
    assert not output.exists()


def test_pack_directory_normalises_and_deduplicates_names(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    a.write_bytes(b"one")
    b = tmp_path / "b.jpg"
    b.write_bytes(b"two")
    output = tmp_path / "results.zip"
    outcome = pack_directory(
        [("photo.jpg", a), ("photo.jpg", b), ("../../etc/x.jpg", a)], output, "zip", 82
    )
    assert outcome.mime_type == "application/zip"
    with zipfile.ZipFile(output) as archive:
        assert archive.namelist() == ["photo.jpg", "photo (2).jpg", "file-3"]
        assert archive.read("photo (2).jpg") == b"two"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pack")] == []


@pytest.mark.parametrize("fmt", ["tar", "tgz", "7z", "gz", "xz"])
def test_pack_directory_writes_every_format(tmp_path: Path, fmt: str) -> None:
    paths = []
    for index in range(3):
        path = tmp_path / f"{index}.txt"
        path.write_text(f"file {index}")
        paths.append((f"{index}.txt", path))
    output = tmp_path / f"results.{fmt}"
    pack_directory(paths, output, fmt, 50)
    assert _listing(output) == {"0.txt", "1.txt", "2.txt"}


def _zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_gz_of_a_file_or_a_one_file_archive_is_named_for_its_stream(tmp_path: Path) -> None:
    plain = tmp_path / "photo.jpg"
    plain.write_bytes(b"\xff\xd8\xff" + os.urandom(100))
    wrapped = convert(
        plain,
        tmp_path / "a.gz",
        "jpg",
        "photo.jpg",
        ConversionOptions(format="gz"),
        ArchiveLimits(),
        tmp_path,
    )
    assert wrapped.output_name == "photo.jpg.gz"
    one = _zip_of(tmp_path / "one.zip", {"docs/report.txt": b"only\n"})
    single = convert(
        one,
        tmp_path / "b.gz",
        "zip",
        "one.zip",
        ConversionOptions(format="gz"),
        ArchiveLimits(),
        tmp_path,
    )
    assert single.output_name == "report.txt.gz"
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == b"only\n"
    several = _zip_of(tmp_path / "two.zip", {"a.txt": b"a", "b.txt": b"b"})
    tarred = convert(
        several,
        tmp_path / "c.gz",
        "zip",
        "two.zip",
        ConversionOptions(format="gz"),
        ArchiveLimits(),
        tmp_path,
    )
    assert tarred.output_name == ""  # the job's `two.tar.gz` stands
    assert _listing(tmp_path / "c.gz") == {"a.txt", "b.txt"}


def test_compress_keeps_an_archive_it_cannot_shrink(tmp_path: Path) -> None:
    source = _zip_of(tmp_path / "noise.zip", {"noise.bin": os.urandom(50_000)})
    output = tmp_path / "out.zip"
    outcome = convert(
        source, output, "zip", "noise.zip", ConversionOptions(), ArchiveLimits(), tmp_path
    )
    assert outcome.kept_original
    assert output.read_bytes() == source.read_bytes()


# In a process of its own (a tracer provider is global to a process), as the sandbox runs it:
# under a caller's context, the spans recorded come back as records.
PACK_TRACED = """
import json, sys
from pathlib import Path
from mesh import tracing
from services.archive import pack_directory

folder, count, cap, carrier = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
entries = []
for index in range(count):
    path = folder / f"{index}.bin"
    path.write_bytes(b"x" * (index + 1))
    entries.append((f"secret-name-{index}.bin", path))
with tracing.sandboxed({"traceparent": carrier} if carrier else {}) as records:
    pack_directory(entries, folder / "out.zip", "zip", 50, traced_members=cap)
print(json.dumps([
    {"name": r.name, "id": r.span_id, "parent": r.parent_id, "trace": r.trace_id,
     "attributes": r.attributes}
    for r in records
]))
"""
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _pack_traced(folder: Path, count: int, cap: int, carrier: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", PACK_TRACED, str(folder), str(count), str(cap), carrier],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    spans: list[dict[str, Any]] = json.loads(done.stdout)
    return spans


def test_a_traced_pack_has_a_span_per_member_up_to_the_cap(tmp_path: Path) -> None:
    spans = _pack_traced(tmp_path, 10, 4, CALLER)
    (pack,) = [s for s in spans if s.get("name") == "pack"]
    assert pack["parent"] == 0xB7AD6B7169203331  # the caller's span
    assert pack["attributes"]["convertmesh.entries"] == 10
    assert pack["attributes"]["convertmesh.member_spans"] == 4
    members = [s for s in spans if s["name"] == "pack member"]
    assert [m["attributes"]["convertmesh.member_index"] for m in members] == [0, 1, 2, 3]
    assert [m["attributes"]["convertmesh.input_bytes"] for m in members] == [1, 2, 3, 4]
    assert {m["parent"] for m in members} == {pack["id"]}
    assert {s["trace"] for s in spans} == {0x0AF7651916CD43DD8448EB211C80319C}
    # Ids and sizes only: no member's name.
    assert "secret-name" not in json.dumps(spans)
    assert zipfile.ZipFile(tmp_path / "out.zip").namelist() == [
        f"secret-name-{index}.bin" for index in range(10)
    ]


def test_an_untraced_pack_records_no_span(tmp_path: Path) -> None:
    assert _pack_traced(tmp_path, 3, 100, "") == []
    # A cap of 0 keeps the stage and drops every member's span.
    spans = _pack_traced(tmp_path, 3, 0, CALLER)
    assert [s["name"] for s in spans] == ["pack"]
    assert spans[0]["attributes"]["convertmesh.member_spans"] == 0
