from __future__ import annotations

import pytest

from services.archive.names import UnsafeNameError, from_filename, normalise


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("../evil", ".."),
        ("a/../../evil", ".."),
        ("..\\evil", ".."),
        ("/abs/evil", "absolute"),
        ("\\abs\\evil", "absolute"),
        ("C:\\evil", "drive"),
        ("c:evil", "drive"),
        ("evil\x00.txt", "NUL"),
        ("x" * 300, "component"),
        ("a/" * 600, "longer than 1024"),
        ("", "empty"),
        ("./", "empty"),
    ],
)
def test_unsafe_names_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(UnsafeNameError) as refused:
        normalise(raw, 1024)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("dir/file.txt", "dir/file.txt"),
        ("./dir//file.txt", "dir/file.txt"),
        ("dir\\sub\\file.txt", "dir/sub/file.txt"),
        ("dir/", "dir"),
        ("表だよ/漢字.txt", "表だよ/漢字.txt"),
        ("𝒻𝒾𝓁𝑒.txt", "𝒻𝒾𝓁𝑒.txt"),
        ("a\nb\x01c", "a_b_c"),
        ("..hidden/x..y", "..hidden/x..y"),
    ],
)
def test_safe_names_keep_their_unicode_and_lose_only_noise(raw: str, expected: str) -> None:
    assert normalise(raw, 1024) == expected


def test_undecodable_bytes_from_tarfile_surrogates_become_replacement_chars() -> None:
    raw = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    assert normalise(raw, 1024) == "caf\ufffd.txt"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("..", "file"),
        ("", "file"),
        ("a\x00b.txt", "ab.txt"),
    ],
)
def test_upload_filenames_become_one_safe_component(filename: str, expected: str) -> None:
    assert from_filename(filename) == expected


def test_overlong_upload_filename_is_cut_to_a_valid_component() -> None:
    name = from_filename("é" * 300 + ".txt")
    assert 0 < len(name.encode()) <= 255
