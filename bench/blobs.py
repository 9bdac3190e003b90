"""Blob store throughput and memory: mesh.blobs against nats-py's ObjectStore, in one run.

    .venv/bin/python -m bench.blobs [--size-mb 100] [--reps 3] [--store-dir DIR]

Starts its own nats-server (launcher config: fsync on every write) with its store in a temporary
folder (or under --store-dir, e.g. /dev/shm to take the disk out of the picture). Every run is a
fresh child process; its peak RSS growth is the kernel's high-water mark (reset just before the
operation) minus the RSS at that moment; runs of the different
implementations alternate so that load from other processes falls on all of them alike.
MB is 10^6 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js import JetStreamContext, api

from launcher.nats import start_nats
from mesh import blobs

BUCKET = "bench"
READ_NAME = "read-me"


@dataclass(frozen=True)
class Case:
    key: str
    operation: str
    label: str


CASES = [
    Case("write_ours", "write", "mesh.blobs.write_file"),
    Case("write_nats", "write", "nats-py ObjectStore.put(file)"),
    Case("read_ours", "read", "mesh.blobs.read_to_file"),
    Case("read_nats_into", "read", "nats-py ObjectStore.get(writeinto=file)"),
]
# get() without writeinto grows one bytes object per chunk (quadratic: ~2 MB/s at 100 MB).
IN_MEMORY_GET = Case("read_nats_bytes", "read", "nats-py ObjectStore.get() + file.write")
BASELINES = {"write_ours": "write_nats", "read_ours": "read_nats_into"}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Resets the kernel's RSS high-water mark (Linux >= 4.0) and returns the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


async def _operation(
    key: str, js: JetStreamContext, source: Path, target: Path, chunk_size: int
) -> None:
    store = await js.object_store(BUCKET)
    if key == "write_ours":
        await blobs.write_file(js, BUCKET, target.name, source, chunk_size=chunk_size)
    elif key == "write_nats":
        meta = api.ObjectMeta(options=api.ObjectMetaOptions(max_chunk_size=chunk_size))
        with source.open("rb") as file:
            await store.put(target.name, file, meta=meta)
    elif key == "read_ours":
        await blobs.read_to_file(js, BUCKET, READ_NAME, target)
    elif key == "read_nats_into":
        with target.open("wb") as file:
            await store.get(READ_NAME, writeinto=file)
    elif key == "read_nats_bytes":
        result = await store.get(READ_NAME)
        with target.open("wb") as file:
            file.write(result.data or b"")
    else:
        raise ValueError(key)


async def _child(
    key: str, url: str, source: Path, target: Path, chunk_size: int
) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        before = _reset_peak_rss()
        started = time.perf_counter()
        await _operation(key, js, source, target, chunk_size)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "rss_growth": _peak_rss() - before}
    finally:
        if key.startswith("write"):
            await blobs.delete(js, BUCKET, target.name)
        await nc.close()


def _run_child(key: str, url: str, source: Path, target: Path, chunk_size: int) -> dict[str, float]:
    child = ["--child", key, url, str(source), str(target), f"--chunk-kib={chunk_size // 1024}"]
    command = [sys.executable, "-m", "bench.blobs", *child]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    target.unlink(missing_ok=True)
    result: dict[str, float] = json.loads(output)
    return result


async def _prepare(url: str, source: Path, chunk_size: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await blobs.ensure_bucket(js, BUCKET)
    await blobs.write_file(js, BUCKET, READ_NAME, source, chunk_size=chunk_size)
    await nc.close()


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as file:
        for start in range(0, size, 1 << 20):
            file.write(os.urandom(min(1 << 20, size - start)))


def _report(size: int, cases: list[Case], runs: dict[str, list[dict[str, float]]]) -> None:
    mbps = {key: [size / 1e6 / run["seconds"] for run in results] for key, results in runs.items()}
    median = {key: statistics.median(values) for key, values in mbps.items()}
    print(f"{'op':<6} {'implementation':<42} {'median MB/s':>11}  {'runs MB/s':<22} peak RSS +MiB")
    for case in cases:
        runs_text = " ".join(f"{value:.0f}" for value in mbps[case.key])
        growth = max(run["rss_growth"] for run in runs[case.key]) / 2**20
        print(
            f"{case.operation:<6} {case.label:<42} {median[case.key]:>11.0f}  {runs_text:<22} "
            f"{growth:>12.1f}"
        )
    labels = {case.key: case.label for case in cases}
    pairs = [*BASELINES.items()]
    if IN_MEMORY_GET in cases:
        pairs.append(("read_ours", IN_MEMORY_GET.key))
    for ours, baseline in pairs:
        ratio = median[ours] / median[baseline]
        print(f"ratio {labels[ours]} / {labels[baseline]}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--store-dir", type=Path, default=None)
    parser.add_argument("--chunk-kib", type=int, default=blobs.CHUNK_SIZE // 1024)
    parser.add_argument("--in-memory-get", action="store_true", help="also time get() to bytes")
    parser.add_argument("--child", nargs=4, metavar=("KEY", "URL", "SOURCE", "TARGET"))
    args = parser.parse_args()
    chunk_size = args.chunk_kib * 1024
    if args.child:
        key, url, source, target = args.child
        print(json.dumps(asyncio.run(_child(key, url, Path(source), Path(target), chunk_size))))
        return
    size = args.size_mb * 1_000_000
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        store = Path(tempfile.mkdtemp(dir=args.store_dir)) if args.store_dir else scratch / "nats"
        server = start_nats(store)
        try:
            source = scratch / "source.bin"
            _write_random(source, size)
            asyncio.run(_prepare(server.url, source, chunk_size))
            cases = [*CASES, IN_MEMORY_GET] if args.in_memory_get else CASES
            runs: dict[str, list[dict[str, float]]] = {case.key: [] for case in cases}
            for rep in range(args.reps):
                for case in cases:
                    target = scratch / f"{case.key}-{rep}.out"
                    run = _run_child(case.key, server.url, source, target, chunk_size)
                    runs[case.key].append(run)
            print(
                f"blob {size / 1e6:.0f} MB in {args.chunk_kib} KiB chunks, "
                f"{args.reps} runs each, store {store}"
            )
            _report(size, cases, runs)
        finally:
            server.stop()
            if args.store_dir:
                shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
