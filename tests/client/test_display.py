"""The CLI's progress: bars on a terminal, plain lines elsewhere, at most one line per quarter."""

from __future__ import annotations

import io

from convertmesh.display import Display, human_bytes


def test_plain_lines_come_at_each_quarter_and_phase() -> None:
    out = io.StringIO()
    with Display(stream=out) as display:  # a StringIO is no terminal: plain lines
        display.add("0", "clip.mov")
        for sent in range(0, 101, 5):
            display.step("0", "upload", sent, 100)
        display.step("0", "processing", 50, 100)
        display.finish("0", True, "saved out/clip.mp4")
    lines = out.getvalue().splitlines()
    assert lines == [
        "clip.mov: upload 0%",
        "clip.mov: upload 25%",
        "clip.mov: upload 50%",
        "clip.mov: upload 75%",
        "clip.mov: upload 100%",
        "clip.mov: processing 50%",
        "clip.mov: saved out/clip.mp4",
    ]


def test_bars_end_in_one_line_per_file() -> None:
    out = io.StringIO()
    with Display(stream=out, bars=True) as display:
        display.add("0", "photo.heic")
        display.add("1", "broken.png")
        display.step("0", "download", 10, None)
        display.finish("0", True, "saved out/photo.webp")
        display.finish("1", False, "failed: damaged")
    text = out.getvalue()
    assert "✓ photo.heic: saved out/photo.webp" in text
    assert "✗ broken.png: failed: damaged" in text


def test_quiet_shows_nothing_but_errors() -> None:
    out = io.StringIO()
    with Display(stream=out, quiet=True) as display:
        display.add("0", "a.jpg")
        display.step("0", "upload", 1, 2)
        display.line("hello")
        display.error("it broke")
    assert out.getvalue().strip() == "convertmesh: it broke"


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (None, 999, 1000, 1_500_000, 3 * 10**12)] == [
        "?",
        "999 B",
        "1.0 KB",
        "1.5 MB",
        "3000.0 GB",
    ]
