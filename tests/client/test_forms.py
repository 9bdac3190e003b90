"""What the client sends and how it reads answers, without a server: option fields (single or
per-file array form), sizes, which `--to` format a file gets, output names from either result
shape, every media tool reachable from the client and the CLI, and the installed command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from convertmesh import Options, parse_size
from convertmesh.cli import build_parser, main
from convertmesh.errors import InvalidRequestError
from convertmesh.families import format_for
from convertmesh.models import FileResult, Job
from convertmesh.options import form_fields
from convertmesh.tools import TOOLS, ToolMethods, tool_named, wire_params

ROOT = Path(__file__).resolve().parents[2]


def test_options_all_files_share_use_the_single_form() -> None:
    fields = form_fields([Options(format="webp", quality=70)] * 3)
    assert fields == [("format", "webp"), ("compression", "70")]


def test_options_that_differ_use_the_per_file_array_with_nulls() -> None:
    fields = dict(
        form_fields(
            [
                Options(format="webp"),
                Options(format="mp4", target_bytes=2000),
                Options(format="zip"),
            ]
        )
    )
    assert json.loads(fields["formats"]) == ["webp", "mp4", "zip"]
    assert json.loads(fields["targetByteValues"]) == [None, 2000, None]
    assert json.loads(fields["modes"]) == [None, "target-size", None]
    assert "format" not in fields


def test_sizes() -> None:
    assert parse_size("200KB") == 200_000
    assert parse_size("1.5 MB") == 1_500_000
    assert parse_size("300KiB") == 307_200
    assert parse_size("2000") == 2000
    with pytest.raises(InvalidRequestError):
        parse_size("big")


def test_each_file_takes_the_first_format_of_its_own_kind() -> None:
    formats = ["webp", "mp4", "zip"]
    assert format_for("photo.HEIC", formats) == "webp"
    assert format_for("clip.mov", formats) == "mp4"
    assert format_for("bundle.tar.gz", formats) == "zip"
    assert format_for("song.flac", ["webp", "mp3"]) == "mp3"
    assert format_for("clip.mp4", ["png", "mp3"]) == "mp3"  # a clip's audio before a still
    assert format_for("notes.txt", formats) == "webp"  # no kind: the first; the server decides
    assert format_for("anything.bin", ["tar"]) == "tar"


def test_output_name_from_older_and_newer_result_shapes() -> None:
    older = FileResult.from_json({"index": 0, "filename": "hopper.jpg", "format": "webp"})
    newer = FileResult.from_json(
        {"index": 0, "filename": "hopper.webp", "originalFilename": "hopper.jpg"}
    )
    unpacked = FileResult.from_json(
        {"filename": "photos.tar", "format": "webp", "mimeType": "application/zip"}
    )
    hostile = FileResult.from_json({"filename": "../../etc/passwd", "originalFilename": "x"})
    assert (older.filename, older.original_filename) == ("hopper.webp", "hopper.jpg")
    assert (newer.filename, newer.original_filename) == ("hopper.webp", "hopper.jpg")
    assert unpacked.filename == "photos.zip"
    assert FileResult.from_json({"filename": "a.zip", "format": "tgz"}).filename == "a.tar.gz"
    assert hostile.filename == "passwd"


def test_a_job_reads_leniently() -> None:
    job = Job.from_json({"jobId": "j", "status": "processing", "results": None})
    assert (job.id, job.files, job.finished) == ("j", (), False)


def test_every_tool_has_a_client_method_and_a_cli_command() -> None:
    called: list[str] = []

    class Recorder(ToolMethods[str]):
        def tool(self, name: str, source: object, **params: object) -> str:
            called.append(name)
            return name

    recorder = Recorder()
    for method in [m for m in dir(ToolMethods) if not m.startswith("_")]:
        getattr(recorder, method)("file")
    assert sorted(called) == sorted(TOOLS)
    assert len(TOOLS) == 13
    parser = build_parser()
    for name, tool in TOOLS.items():
        args = parser.parse_args(["tools", name, "in.mp4"])
        assert (args.command, args.tool) == ("tools", name)
        assert tool.summary


def test_tool_parameters_by_either_name_and_unknown_ones_refused() -> None:
    gif = tool_named("gif")
    assert wire_params(gif, {"start": 3, "duration": 4.5, "fps": None}) == [
        ("start", "3"),
        ("duration", "4.5"),
    ]
    assert wire_params(tool_named("extract-audio"), {"bitrate_kbps": 128}) == [
        ("bitrateKbps", "128")
    ]
    with pytest.raises(InvalidRequestError, match="has no parameter 'speed'"):
        wire_params(gif, {"speed": 2})
    with pytest.raises(InvalidRequestError, match="no media tool"):
        tool_named("explode")


def test_the_project_installs_the_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["convertmesh"] == "convertmesh.cli:main"


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["convert", "photo.jpg", "--to", "bogus", "--key", "k"])
    assert raised.value.code == 2
    assert "unknown format 'bogus'" in capsys.readouterr().err
    monkeypatch.delenv("CONVERTMESH_API_KEY", raising=False)
    assert main(["jobs", "list"]) == 2
    assert "no API key" in capsys.readouterr().err
    assert main(["convert", "/no/such/file.jpg", "--to", "png", "--key", "k"]) == 2
    assert "no such file" in capsys.readouterr().err
