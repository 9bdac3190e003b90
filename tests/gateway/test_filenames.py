from __future__ import annotations

import pytest

from services.gateway.filenames import FALLBACK_FILENAME, MAX_FILENAME_BYTES, display_filename


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/photo.jpg", "photo.jpg"),
        ("pho\x00to.jpg", "photo.jpg"),
        ("evil\r\nSet-Cookie: x=1.png", "evilSet-Cookie: x=1.png"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("a\u2066b\u2069c\u200f.png", "abc.png"),
        ("line\u2028break.png", "linebreak.png"),
        ("  spaced.png  ", "spaced.png"),
        ("résumé 日本.png", "résumé 日本.png"),
    ],
)
def test_names_lose_paths_and_invisible_characters(raw: str, shown: str) -> None:
    assert display_filename(raw) == shown


@pytest.mark.parametrize("raw", ["", "..", ".", "../", "dir/", "\x00\u202e", "   "])
def test_names_with_nothing_left_get_the_fallback(raw: str) -> None:
    assert display_filename(raw) == FALLBACK_FILENAME


def test_long_utf8_name_is_cut_on_a_character_boundary_keeping_the_extension() -> None:
    raw = "日" * 100 + ".jpeg"  # 305 bytes of UTF-8

    shown = display_filename(raw)

    encoded = shown.encode()
    assert len(encoded) <= MAX_FILENAME_BYTES
    assert len(encoded) > MAX_FILENAME_BYTES - 3  # cut no more than one character short
    assert shown.endswith(".jpeg")
    assert set(shown.removesuffix(".jpeg")) == {"日"}


def test_long_name_without_a_short_extension_is_cut_plainly() -> None:
    shown = display_filename("é" * 150 + "." + "x" * 40)
    assert len(shown.encode()) == MAX_FILENAME_BYTES - 1  # 2-byte characters: 254 fits, 256 not
    assert set(shown) == {"é"}
