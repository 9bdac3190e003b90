"""The `convertmesh` CLI as a user runs it (a separate process, not a terminal) against the real
mesh: a mixed batch converted and checked with decoders other than the mesh's, a failed file
that leaves the others saved (exit 1), a wrong key and an unreachable server explained (exit 2
and 3), compress to a target size, and the jobs commands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from convertmesh import AsyncClient, Client, Options
from launcher.mesh import LocalMesh
from launcher.nats import free_port
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS

ROOT = Path(__file__).resolve().parents[2]


def cli(mesh: LocalMesh, *args: str, key: str = KEYS["acme"]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONVERTMESH_URL": mesh.http_url,
        "CONVERTMESH_API_KEY": key,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "convertmesh", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ffprobe(path: Path) -> dict[str, Any]:
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    probed: dict[str, Any] = json.loads(output)
    return probed


def bsdtar_names(path: Path) -> set[str]:
    listing = subprocess.run(
        ["bsdtar", "-tf", path], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {name for name in listing.splitlines() if name and not name.endswith("/")}


def test_mixed_batch_is_converted_saved_and_decodable(mesh: LocalMesh, tmp_path: Path) -> None:
    photo = CORPUS / "exif-orientation-examples/Landscape_6.jpg"
    clip = CORPUS / "go-mediainfo/sample.mp4"
    archive = CORPUS / "pillow/hopper.tar"
    out = tmp_path / "out"
    done = cli(mesh, "convert", str(photo), str(clip), str(archive), "--to", "webp,webm,zip",
               "-o", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    outputs = [Path(entry["output"]) for entry in report["files"]]
    assert [p.name for p in outputs] == ["Landscape_6.webp", "sample.webm", "hopper.zip"]
    assert all(p.parent == out for p in outputs)

    with Image.open(outputs[0]) as image:  # Pillow, not the libvips that wrote it
        assert (image.format, image.size) == ("WEBP", (1800, 1200))
    probed, source = ffprobe(outputs[1]), ffprobe(clip)
    video = [s for s in probed["streams"] if s["codec_type"] == "video"]
    assert probed["format"]["format_name"].startswith("matroska,webm")
    assert video and video[0]["codec_name"] in ("vp9", "vp8", "av1")
    assert abs(float(probed["format"]["duration"]) - float(source["format"]["duration"])) < 0.15
    assert bsdtar_names(outputs[2]) == bsdtar_names(archive)

    # Not a terminal: plain progress lines for every phase of every file, no escape codes.
    assert "\x1b[" not in done.stderr
    for name in ("Landscape_6.jpg", "sample.mp4", "hopper.tar"):
        for phase in ("upload 100%", "download 100%", "saved "):
            assert f"{name}: {phase}" in done.stderr, done.stderr


def test_a_failed_file_exits_1_and_the_others_are_saved(mesh: LocalMesh, tmp_path: Path) -> None:
    files = [
        CORPUS / "pillow/hopper.png",
        CORPUS / "pillow/broken.png",
        CORPUS / "pillow/hopper.jpg",
    ]
    out = tmp_path / "out"
    done = cli(mesh, "convert", *map(str, files), "--to", "png", "-o", str(out), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert [entry["status"] for entry in report["files"]] == ["completed", "failed", "completed"]
    assert report["files"][1]["code"] == "CORRUPT_INPUT"
    assert "broken.png: failed:" in done.stderr
    # Two outputs are named hopper.png: neither overwrites the other.
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["hopper (2).png", "hopper.png"]
    for path in out.iterdir():
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (128, 128))


def test_a_wrong_key_is_explained_and_exits_2(mesh: LocalMesh, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli(mesh, "convert", str(CORPUS / "pillow/hopper.jpg"), "--to", "png",
               "-o", str(out), key="not-a-key")  # fmt: skip
    assert done.returncode == 2
    assert "refused the API key" in done.stderr
    assert "401" in done.stderr and "CONVERTMESH_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_an_unreachable_server_exits_3(mesh: LocalMesh, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    done = cli(mesh, "--url", nobody, "--retries", "2", "jobs", "list")
    assert done.returncode == 3
    assert f"Cannot reach {nobody}" in done.stderr
    assert "trying again" in done.stderr  # the one retry was announced


def test_compress_to_a_target_size(mesh: LocalMesh, tmp_path: Path) -> None:
    photo = CORPUS / "exif-orientation-examples/Landscape_1.jpg"
    out = tmp_path / "out"
    done = cli(mesh, "compress", str(photo), "--target-size", "150KB", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    output = Path(json.loads(done.stdout)["files"][0]["output"])
    assert output.stat().st_size <= 150_000 < photo.stat().st_size
    with Image.open(io.BytesIO(output.read_bytes())) as image:
        assert (image.format, image.size) == ("JPEG", (1800, 1200))


def test_jobs_commands_show_list_and_download(mesh: LocalMesh, tmp_path: Path) -> None:
    created = cli(mesh, "convert", str(CORPUS / "pillow/hopper.jpg"), "--to", "webp",
                  "--no-wait", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    (job_id,) = json.loads(created.stdout)["jobs"]

    waited = cli(mesh, "jobs", "wait", job_id, "-o", str(tmp_path), "--json")
    assert waited.returncode == 0, waited.stderr
    assert (tmp_path / "hopper.webp").stat().st_size > 0

    shown = cli(mesh, "jobs", "show", job_id)
    assert shown.returncode == 0
    assert f"job {job_id}: completed" in shown.stdout
    assert "hopper.jpg -> hopper.webp: completed" in shown.stdout

    listed = cli(mesh, "jobs", "list", "--limit", "100", "--json")
    assert job_id in {job["jobId"] for job in json.loads(listed.stdout)["jobs"]}

    cancelled = cli(mesh, "jobs", "cancel", job_id)
    assert cancelled.returncode == 1  # a finished job cannot be cancelled: 409, explained
    assert "409" in cancelled.stderr


async def test_python_client_sync_routes_and_async_jobs(mesh: LocalMesh, tmp_path: Path) -> None:
    """The library under the CLI, through the mesh: /api/convert answering bytes for one file,
    /api/compress answering data: URLs for two, and the async client's job round trip."""
    photo, other = CORPUS / "pillow/hopper.jpg", CORPUS / "pillow/hopper.png"
    with Client(mesh.http_url, KEYS["acme"]) as client:
        (converted,) = client.convert(photo, "png", dest=tmp_path / "sync")
        compressed = client.compress([photo, other], dest=tmp_path / "compressed")
    with Image.open(converted.path) as image:
        assert (image.format, image.size) == ("PNG", (128, 128))
    assert sorted(Path(s.path).suffix for s in compressed) == [".jpg", ".png"]
    for saved in compressed:
        with Image.open(saved.path) as image:
            assert image.size == (128, 128)

    progress: list[int] = []
    async with AsyncClient(mesh.http_url, KEYS["acme"]) as client:
        job_id = await client.create_job(
            [photo, other], per_file=[Options(format="webp"), Options(format="avif")]
        )
        job = await client.wait(job_id, on_progress=lambda j: progress.append(j.progress))
        outputs = await client.download_outputs(job, tmp_path / "async")
    assert job.all_ok and progress[-1] == 100
    assert [s.mime_type for s in outputs] == ["image/webp", "image/avif"]
    with Image.open(outputs[0].path) as image:
        assert image.format == "WEBP"


def test_cli_tools_run_against_the_mesh(mesh: LocalMesh, tmp_path: Path) -> None:
    clip = CORPUS / "go-mediainfo" / "sample.mp4"
    out = tmp_path / "gif"
    done = cli(mesh, "tools", "gif", str(clip), "--duration", "1", "--width", "160", "-o", str(out))
    assert done.returncode == 0, done.stderr
    (gif,) = out.iterdir()
    assert gif.name == "sample.gif"
    video = ffprobe(gif)["streams"][0]
    assert (video["codec_name"], video["width"]) == ("gif", 160)

    pictures = tmp_path / "pdf"
    hopper = str(CORPUS / "pillow" / "hopper.png")
    done = cli(
        mesh, "tools", "image-to-pdf", hopper, hopper, "--page-size", "a4", "-o", str(pictures)
    )
    assert done.returncode == 0, done.stderr
    (pdf,) = pictures.iterdir()
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    assert [ln.split()[1] for ln in pages.stdout.splitlines() if ln.startswith("Pages:")] == ["2"]

    marked = tmp_path / "marked"
    done = cli(
        mesh, "tools", "watermark", hopper, "--watermark-file", hopper,
        "--watermark-width", "40", "--position", "top-left", "-o", str(marked),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p.suffix for p in marked.iterdir()] == [".png"]


def test_cli_tool_in_the_background_follows_the_job(mesh: LocalMesh, tmp_path: Path) -> None:
    clip = CORPUS / "go-mediainfo" / "sample.mp4"
    done = cli(
        mesh, "tools", "trim", str(clip), "--start", "1", "--duration", "1.5",
        "--background", "-o", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (trimmed,) = tmp_path.iterdir()
    assert abs(float(ffprobe(trimmed)["format"]["duration"]) - 1.5) <= 0.1


def test_cli_inspect_prints_the_media_document(mesh: LocalMesh) -> None:
    clip = CORPUS / "go-mediainfo" / "sample.mkv"
    done = cli(mesh, "inspect", str(clip), "--json")
    assert done.returncode == 0, done.stderr
    media = json.loads(done.stdout)["media"]
    truth = ffprobe(clip)
    assert (media["width"], media["height"]) == (640, 360)
    assert abs(media["duration"] - float(truth["format"]["duration"])) <= 0.05
    assert [s["codec"] for s in media["streams"]] == [s["codec_name"] for s in truth["streams"]]
    plain = cli(mesh, "inspect", str(clip))
    assert plain.returncode == 0 and "640" in plain.stdout


def test_cli_a_refused_tool_input_is_explained(mesh: LocalMesh) -> None:
    done = cli(mesh, "tools", "gif", str(CORPUS / "go-mediainfo" / "sample.mp3"))
    assert done.returncode != 0 and "gif tool does not take mp3" in done.stderr
