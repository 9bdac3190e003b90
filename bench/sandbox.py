"""CPU per thumbnail in one process, interleaved: bench/direct.py's conversion, the image
pipeline called in this process, and the pipeline through a pooled sandbox process (the
sandbox's CPU read from /proc, and this process's share: pickling, the pipe, the wait).

    .venv/bin/python -m bench.sandbox [--calls 20] [--blocks 10]

The same photo and request as `bench.e2e`'s thumbnail (500 px wide, JPEG, compression 82).
Each block runs every variant `--calls` times, in an order that alternates between blocks;
the medians over blocks are printed, with minor page faults and context switches per call.
The machine is shared: compare the variants of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import direct
from bench.e2e import PHOTO
from mesh import sandbox
from mesh.options import ConversionOptions
from services.image import pipeline
from services.image.limits import ImageLimits

OPTIONS = ConversionOptions(
    format="jpg", resize="width", resize_width=direct.THUMBNAIL, compression=direct.QUALITY
)
LIMITS = ImageLimits()
BOUNDS = sandbox.SandboxLimits(wall_seconds=60, memory_bytes=2048 * 1024 * 1024)
_TICKS = os.sysconf("SC_CLK_TCK")

# (CPU seconds, minor faults, context switches)
Usage = tuple[float, int, int]


def own_usage() -> Usage:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime, used.ru_minflt, used.ru_nvcsw + used.ru_nivcsw


def sandbox_usage() -> Usage:
    """What the pool's live processes used, all their threads together."""
    cpu, faults, switches = 0.0, 0, 0
    for pid in list(sandbox._POOL.live):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            switches += sum(_switches(task.path) for task in os.scandir(f"/proc/{pid}/task"))
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS
        faults += int(fields[7])
    return cpu, faults, switches


def _switches(task: str) -> int:
    with open(f"{task}/status") as status:
        return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)


async def measure(
    calls: int, run: Callable[[], Awaitable[None]], usage: Callable[[], Usage]
) -> Usage:
    before = usage()
    for _ in range(calls):
        await run()
    after = usage()
    return (
        (after[0] - before[0]) / calls * 1000,
        (after[1] - before[1]) // calls,
        (after[2] - before[2]) // calls,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=10)
    args = parser.parse_args()
    sandbox.preload(["services.image.pipeline"])
    folder = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    source, output = folder / "source", folder / "output"
    source.write_bytes(PHOTO.read_bytes())

    async def direct_call() -> None:
        direct.thumbnail(PHOTO.read_bytes())

    async def in_process() -> None:
        pipeline.convert(source, output, "jpg", OPTIONS, LIMITS)

    async def sandboxed() -> None:
        await sandbox.run_isolated(
            pipeline.convert, source, output, "jpg", OPTIONS, LIMITS, limits=BOUNDS
        )

    variants: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Usage]]] = {
        "pyvips direct (bench/direct.py)": (direct_call, own_usage),
        "pipeline.convert in process": (in_process, own_usage),
        "sandbox process": (sandboxed, sandbox_usage),
        "sandbox: the caller's share": (sandboxed, own_usage),
    }
    for run, _ in variants.values():
        for _ in range(3):
            await run()
    found: dict[str, list[Usage]] = {name: [] for name in variants}
    try:
        for block in range(args.blocks):
            names = list(variants) if block % 2 == 0 else list(reversed(variants))
            for name in names:
                run, usage = variants[name]
                found[name].append(await measure(args.calls, run, usage))
    finally:
        await sandbox.shutdown()
    print(f"{args.blocks} blocks of {args.calls} calls, medians per call:")
    for name, rows in found.items():
        cpu = statistics.median(row[0] for row in rows)
        faults = statistics.median(row[1] for row in rows)
        switches = statistics.median(row[2] for row in rows)
        print(f"  {name:34s} {cpu:6.2f} ms CPU  {faults:5.0f} faults  {switches:4.0f} switches")


if __name__ == "__main__":
    asyncio.run(main())
