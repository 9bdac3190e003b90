"""Media tools end to end through the mesh (POST /api/media/<tool>, synchronous, the bytes
answered) against the same tool function called directly in this process on the same input,
in the same run. Prints the best of `--repeat` wall times and the ratio mesh / direct: what the
gateway, the orchestrator, NATS, the blob store and the worker's sandbox add to the tool's own
work. Then one tool run as a job (async=true, polled, downloaded) against its sync form.

    .venv/bin/python -m bench.tools [--repeat 5] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from launcher.mesh import LocalMesh, MeshConfig
from mesh.formats import sniff
from mesh.tools.catalog import Input
from services.image import tools as image_tools
from services.image.limits import ImageLimits
from services.media import tools as media_tools
from services.media.limits import MediaLimits
from tests.corpus import CORPUS

KEY = "bench-tools-key-0123456789"
CASES: list[tuple[str, Path, dict[str, str]]] = [
    ("thumbnail", CORPUS / "exif-orientation-examples" / "Landscape_1.jpg", {"width": "256"}),
    ("transform", CORPUS / "exif-orientation-examples" / "Landscape_1.jpg", {"rotate": "90"}),
    ("inspect", CORPUS / "go-mediainfo" / "sample.mp4", {}),
    ("poster-frame", CORPUS / "go-mediainfo" / "sample.mp4", {"timestamp": "2"}),
    ("gif", CORPUS / "go-mediainfo" / "sample.mp4", {"duration": "2", "width": "320"}),
]


def best_of(repeat: int, action: Callable[..., object], *args: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action(*args)
        times.append(time.perf_counter() - started)
    return min(times)


def direct(tool: str, source: Path, fields: dict[str, str], output: Path) -> None:
    fmt = sniff(source.read_bytes()[:4096]).format
    if tool in media_tools.TOOLS and fmt == "mp4":
        media_tools.run(tool, [Input(source, fmt)], output, fields, MediaLimits())
    else:
        image_tools.run(tool, [Input(source, fmt)], output, fields, ImageLimits())


def through_mesh(http: httpx.Client, tool: str, source: Path, fields: dict[str, str]) -> bytes:
    response = http.post(
        f"/api/media/{tool}",
        data=fields,
        files=[("file", (source.name, source.read_bytes()))],
        headers={"Accept": "application/octet-stream"},
    )
    response.raise_for_status()
    return response.content


def as_job(http: httpx.Client, tool: str, source: Path, fields: dict[str, str]) -> bytes:
    response = http.post(
        f"/api/media/{tool}",
        data={**fields, "async": "true"},
        files=[("file", (source.name, source.read_bytes()))],
    )
    response.raise_for_status()
    job_id = response.json()["jobId"]
    while http.get(f"/api/jobs/{job_id}").json()["status"] not in ("completed", "failed"):
        time.sleep(0.05)
    return http.get(f"/api/jobs/{job_id}/files/0").content


def run(mesh: LocalMesh, scratch: Path, repeat: int) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=mesh.http_url, headers=headers, timeout=120) as http:
        print(f"{'tool':<14}{'direct s':>10}{'mesh s':>10}{'mesh/direct':>13}")
        for tool, source, fields in CASES:
            through_mesh(http, tool, source, fields)  # warm the worker's forkserver
            mine = best_of(repeat, through_mesh, http, tool, source, fields)
            theirs = best_of(repeat, direct, tool, source, fields, scratch / f"{tool}.out")
            print(f"{tool:<14}{theirs:>10.3f}{mine:>10.3f}{mine / theirs:>13.2f}")
        tool, source, fields = CASES[0]
        sync = best_of(repeat, through_mesh, http, tool, source, fields)
        queued = best_of(repeat, as_job, http, tool, source, fields)
        print(f"\n{tool} as a job (async=true, polled every 50 ms, downloaded) / sync: ", end="")
        print(f"{queued:.3f} s / {sync:.3f} s = {queued / sync:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        config = MeshConfig.ephemeral(Path(scratch) / "mesh", f"bench:{KEY}")
        mesh = LocalMesh(config)
        try:
            mesh.start()
            run(mesh, Path(scratch), args.repeat)
        finally:
            mesh.stop()


if __name__ == "__main__":
    main()
