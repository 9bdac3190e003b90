"""The gateway's refusal of a file by its first bytes (services.gateway.early): which output the
fields read so far name for the file, and which files that refuses."""

from __future__ import annotations

import pytest

from mesh.errors import MeshError, Reason
from services.gateway import early

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(4088)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(4088)


def refused(fields: dict[str, list[str]], index: int, head: bytes) -> str | None:
    """The refused pair, or None when the file may be stored."""
    try:
        early.unknown_to_named_output(fields, index, head)
    except MeshError as error:
        assert error.reason is Reason.UNSUPPORTED_PAIR
        return str(error.detail["pair"])
    return None


def test_an_unrecognised_file_asked_for_a_non_archive_format_is_refused() -> None:
    assert refused({"format": ["png"]}, 0, ELF) == "unknown->png"
    assert refused({"format": ["mp4"]}, 3, ELF) == "unknown->mp4"


@pytest.mark.parametrize("output", ["zip", "tar", "tgz", "7z", "gz", "bz2", "xz"])
def test_any_file_may_be_wrapped_or_compressed_into_an_archive(output: str) -> None:
    assert refused({"format": [output]}, 0, ELF) is None


def test_a_recognised_file_or_an_output_not_named_yet_is_left_to_the_job() -> None:
    assert refused({"format": ["png"]}, 0, PNG) is None
    assert refused({}, 0, ELF) is None
    assert refused({"format": ["  "]}, 0, ELF) is None
    assert refused({"format": ["bogus"]}, 0, ELF) is None  # a 400 later, not a 415 now


def test_the_files_formats_entry_wins_over_format_as_options_are_read() -> None:
    fields = {"format": ["png"], "formats": ['["zip", null]']}
    assert refused(fields, 0, ELF) is None
    assert refused(fields, 1, ELF) == "unknown->png"  # null: falls back to format
    assert refused(fields, 2, ELF) == "unknown->png"  # past the array
    assert refused({"formats": ["not json"], "format": ["webp"]}, 0, ELF) == "unknown->webp"


def test_sync_compress_refuses_any_unrecognised_file() -> None:
    with pytest.raises(MeshError) as failed:
        early.unknown_in_own_format({}, 0, ELF)
    assert failed.value.detail["pair"] == "unknown->unknown"
    early.unknown_in_own_format({}, 0, PNG)
