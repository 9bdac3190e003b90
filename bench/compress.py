"""What compress saves with default settings, end to end through a real mesh, over every corpus
image and media file that can be compressed in its own format.

Each file is sent to `POST /api/compress` with no options at all, and, as the baseline in the
same run, to `POST /api/convert` with `format=<its own format>` and no other option: a
re-encode at the API defaults, which is what compress did before it had its own defaults.
Prints the median, lowest and highest savedPercent of both, how many outputs were larger than
their source, how many came back as the untouched original, and the median per format.

    .venv/bin/python -m bench.compress [--workdir /tmp] [--concurrency 2]

Files the mesh refuses (damaged, unsupported, over a limit) are counted and left out of the
figures; both sides see the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

from launcher.mesh import LocalMesh, MeshConfig
from mesh.formats import OUTPUT_FORMATS, SNIFF_BYTES, Family, sniff
from tests.corpus import CORPUS

KEY = "bench-compress-key-0123456789"
FAMILIES = frozenset({Family.IMAGE, Family.VIDEO, Family.AUDIO})


@dataclass(frozen=True)
class Measured:
    saved: float
    kept_original: bool


def candidates() -> list[tuple[Path, str]]:
    """(file, sniffed format) of every corpus file compress keeps in its own format."""
    found = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file():
            continue
        with path.open("rb") as stream:
            sniffed = sniff(stream.read(SNIFF_BYTES))
        if sniffed.family in FAMILIES and sniffed.format in OUTPUT_FORMATS:
            found.append((path, sniffed.format))
    return found


async def measure(
    http: httpx.AsyncClient, route: str, path: Path, fields: dict[str, str]
) -> Measured | str:
    data = await asyncio.to_thread(path.read_bytes)
    response = await http.post(
        route,
        headers={"Authorization": f"Bearer {KEY}"},
        data=fields,
        files=[("files", (path.name, data, "application/octet-stream"))],
        timeout=180,
    )
    if response.status_code != 200:
        return str(response.json().get("code", response.status_code))
    (item,) = response.json()["files"]
    if "error" in item:
        return str(item["code"])
    return Measured(float(item["savedPercent"]), bool(item.get("keptOriginal")))


def summary(label: str, results: list[Measured]) -> str:
    saved = [r.saved for r in results]
    larger = sum(1 for s in saved if s < 0)
    kept = sum(1 for r in results if r.kept_original)
    return (
        f"{label:<34} {statistics.median(saved):>7.2f} {min(saved):>8.2f} {max(saved):>7.2f} "
        f"{larger:>7} {kept:>6}"
    )


async def run(base_url: str, files: list[tuple[Path, str]], concurrency: int) -> None:
    ours: dict[Path, Measured | str] = {}
    baseline: dict[Path, Measured | str] = {}
    slots = asyncio.Semaphore(concurrency)

    async def both(http: httpx.AsyncClient, path: Path, fmt: str) -> None:
        async with slots:
            ours[path] = await measure(http, "/api/compress", path, {})
            baseline[path] = await measure(http, "/api/convert", path, {"format": fmt})

    async with httpx.AsyncClient(base_url=base_url) as http:
        await asyncio.gather(*(both(http, path, fmt) for path, fmt in files))
    formats = dict(files)
    pairs = {
        path: (mine, theirs)
        for path, mine in ours.items()
        if isinstance(mine, Measured) and isinstance(theirs := baseline[path], Measured)
    }
    refused: dict[str, int] = defaultdict(int)
    for path, outcome in ours.items():
        if path not in pairs:
            refused[str(outcome if isinstance(outcome, str) else baseline[path])] += 1
    print(f"{len(files)} corpus files, {len(pairs)} measured; refused: {dict(refused)}")
    print(
        f"{'savedPercent':<34} {'median':>7} {'lowest':>8} {'highest':>7} {'larger':>7} {'kept':>6}"
    )
    print(summary("compress (no options)", [mine for mine, _ in pairs.values()]))
    print(summary("baseline: convert to own format", [theirs for _, theirs in pairs.values()]))
    print("\nper format: files, median savedPercent compress / baseline")
    for fmt in sorted({formats[path] for path in pairs}):
        chosen = [pair for path, pair in pairs.items() if formats[path] == fmt]
        ours_median = statistics.median(m.saved for m, _ in chosen)
        their_median = statistics.median(t.saved for _, t in chosen)
        print(f"  {fmt:<5} {len(chosen):>4} {ours_median:>8.2f} / {their_median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    files = candidates()
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        config = MeshConfig.ephemeral(
            Path(scratch), f"bench:{KEY}", SYNC_TIMEOUT_SECONDS="170", MEDIA_CONCURRENCY="1"
        )
        mesh = LocalMesh(config)
        try:
            mesh.start()
            asyncio.run(run(mesh.http_url, files, args.concurrency))
        finally:
            mesh.stop()


if __name__ == "__main__":
    main()
