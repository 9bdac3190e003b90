"""Sniffing decides formats by content on real corpus files, never by name."""

from __future__ import annotations

import pytest

from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS, SNIFF_BYTES, Family, sniff
from tests.corpus import CORPUS


def head(relative: str) -> bytes:
    with (CORPUS / relative).open("rb") as stream:
        return stream.read(SNIFF_BYTES)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("pillow/hopper.jpg", "jpg"),
        ("pillow/hopper.png", "png"),
        ("pillow/hopper.webp", "webp"),
        ("pillow/avif/hopper.avif", "avif"),
        ("pillow/avif/star.avifs", "avif"),
        ("pillow/avif/hopper.heif", "heif"),
        ("small/heif.heif", "heif"),
        ("pillow/iss634.gif", "gif"),
        ("pillow/multipage.tiff", "tiff"),
        ("pillow/hopper_bigtiff.tif", "tiff"),
        ("pillow/hopper.bmp", "bmp"),
        ("pillow/hopper.ico", "ico"),
        ("small/svg.svg", "svg"),
        ("small/pdf.pdf", "pdf"),
        ("go-mediainfo/sample.mp4", "mp4"),
        ("go-mediainfo/sample.mkv", "mkv"),
        ("small/webm.webm", "webm"),
        ("go-mediainfo/sample.avi", "avi"),
        ("go-mediainfo/sample.ts", "ts"),
        ("go-mediainfo/sample.mpg", "mpg"),
        ("go-mediainfo/sample.mp3", "mp3"),
        ("go-mediainfo/sample.flac", "flac"),
        ("go-mediainfo/sample.wav", "wav"),
        ("tinytag/test.m4a", "m4a"),
        ("tinytag/test.opus", "opus"),
        ("tinytag/multi_stream.ogv", "ogv"),
        ("small/zip.zip", "zip"),
        ("small/tar.tar", "tar"),
        ("pillow/hopper.tar", "tar"),
        ("golang/neg-size.tar", "tar"),
        ("small/gzip.gz", "gz"),
        ("small/bzip2.bz2", "bz2"),
        ("small/rar5.rar", "rar"),
        ("libarchive/test_read_format_7zip_ppmd_small_block.7z", "7z"),
    ],
)
def test_corpus_files_are_recognised(relative: str, expected: str) -> None:
    assert sniff(head(relative)).format == expected


@pytest.mark.parametrize(
    "relative", ["tinytag/there_is_no_such_ext.bogus", "small/icc.icc", "small/targa.tga"]
)
def test_files_without_known_magic_are_unknown(relative: str) -> None:
    sniffed = sniff(head(relative))
    assert sniffed.family is Family.UNKNOWN
    assert not sniffed.known


def test_a_name_cannot_change_the_answer() -> None:
    assert sniff(b"ID3\x03" + bytes(100)).format == "mp3"
    assert sniff(b"\x89PNG\r\n\x1a\n" + bytes(100)).family is Family.IMAGE


def test_every_output_format_has_a_mime_type_and_family() -> None:
    for name, fmt in OUTPUT_FORMATS.items():
        assert fmt.name == name and "/" in fmt.mime_type
    assert len(OUTPUT_FORMATS) == 25
    assert set(INPUT_FAMILIES.values()) <= set(Family)
