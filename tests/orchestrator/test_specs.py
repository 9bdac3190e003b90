"""Names of outputs: the output format's extension, gzip's naming for single streams, and
` (N)` for names already taken, exactly as the archive worker stores them."""

from __future__ import annotations

import pytest

from services.orchestrator import specs


@pytest.mark.parametrize(
    ("filename", "output", "source", "expected"),
    [
        ("hopper.jpg", "webp", "jpg", "hopper.webp"),
        ("photos/hopper.jpg", "png", "jpg", "photos/hopper.png"),
        ("noext", "jpg", "png", "noext.jpg"),
        ("photo.jpg", "gz", "jpg", "photo.jpg.gz"),
        ("photo.jpg", "xz", "jpg", "photo.jpg.xz"),
        ("my.zip", "gz", "zip", "my.tar.gz"),
        ("my.tar.gz", "xz", "gz", "my.tar.xz"),
        ("my.tar.gz", "tgz", "gz", "my.tar.gz"),
        ("my.tgz", "zip", "gz", "my.zip"),
        ("my.zip", "7z", "zip", "my.7z"),
    ],
)
def test_output_filename(filename: str, output: str, source: str, expected: str) -> None:
    assert specs.output_filename(filename, output, source) == expected


def test_unique_names_count_up_like_the_archive_worker() -> None:
    taken: set[str] = set()
    names = ["hopper.png", "hopper.png", "a/x.tar.gz", "a/x.tar.gz", "hopper.png", "README"]
    assert [specs.unique_name(name, taken) for name in [*names, "README"]] == [
        "hopper.png",
        "hopper (2).png",
        "a/x.tar.gz",
        "a/x.tar (2).gz",
        "hopper (3).png",
        "README",
        "README (2)",
    ]
