"""Pack and unpack a generated mixed tree with the archive service vs the zip, tar and 7z
command lines, in the same run. Prints seconds, sizes and ratios (ours / CLI).

    .venv/bin/python -m bench.archive [--size-mb 200] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.archive import ArchiveLimits, extract, pack_directory

MIB = 1024 * 1024
COMPRESSION = 82  # the API default: deflate 7, LZMA2 preset 4 (see services/archive/levels.py)
_WORDS = ("archive", "stream", "chunk", "entry", "header", "deflate", "token", "frame")


def generate_tree(root: Path, size_mb: int) -> list[tuple[str, Path]]:
    """40 % random (incompressible), 45 % text-like, 15 % many 4 KiB files."""
    rng = random.Random(1)
    entries: list[tuple[str, Path]] = []

    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries.append((name, path))

    budget = size_mb * MIB
    for index in range(max(1, int(budget * 0.40) // (8 * MIB))):
        put(f"random/blob{index}.bin", os.urandom(8 * MIB))
    lines = [" ".join(rng.choices(_WORDS, k=12)) + f" {rng.random():.6f}\n" for _ in range(20_000)]
    text_block = "".join(lines).encode()
    for index in range(max(1, int(budget * 0.45) // (4 * MIB))):
        rng.shuffle(lines)
        body = "".join(lines).encode()
        put(f"text/log{index}.txt", (body + text_block)[: 4 * MIB])
    for index in range(int(budget * 0.15) // 4096):
        put(f"small/{index // 500}/f{index}.dat", rng.randbytes(1024) + b"\0" * 3072)
    return entries


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=options.workdir))
    try:
        tree = work / "tree"
        entries = generate_tree(tree, options.size_mb)
        total = sum(path.stat().st_size for _, path in entries)
        print(f"tree: {len(entries)} files, {total / MIB:.0f} MiB; compression={COMPRESSION}")
        limits = ArchiveLimits(max_ratio=1e9)
        seven = shutil.which("7zz") or shutil.which("7z") or shutil.which("7za")
        clis: dict[str, tuple[list[str], list[str]] | None] = {
            "zip": (["zip", "-qr", "{out}", "."], ["unzip", "-q", "{out}", "-d", "{dest}"])
            if shutil.which("zip") and shutil.which("unzip")
            else None,
            "tgz": (["tar", "-czf", "{out}", "."], ["tar", "-xzf", "{out}", "-C", "{dest}"]),
            "7z": ([seven, "a", "-bd", "{out}", "."], [seven, "x", "-bd", "{out}", "-o{dest}"])
            if seven
            else None,
        }
        header = (
            f"{'format':6} {'tool':5} {'pack s':>7} {'unpack s':>8} {'MiB':>7} "
            f"{'pack x':>7} {'unpack x':>8} {'size x':>6}"
        )
        print(header)
        for fmt, cli in clis.items():
            ours = work / f"ours.{fmt}"
            pack = timed(lambda: pack_directory(entries, ours, fmt, COMPRESSION))  # noqa: B023
            dest = work / "ours-out"
            unpack = timed(lambda: extract(ours, fmt, dest, limits))  # noqa: B023
            shutil.rmtree(dest)
            size = ours.stat().st_size / MIB
            if cli is None:
                print(f"{fmt:6} ours  {pack:7.1f} {unpack:8.1f} {size:7.1f}   (no {fmt} CLI here)")
                continue
            theirs = work / f"cli.{fmt}"
            cli_dest = work / "cli-out"
            cli_dest.mkdir()
            fill = {"{out}": str(theirs), "{dest}": str(cli_dest)}

            def expand(args: list[str], fill: dict[str, str] = fill) -> list[str]:
                out = []
                for arg in args:
                    expanded = arg
                    for key, value in fill.items():
                        expanded = expanded.replace(key, value)
                    out.append(expanded)
                return out

            cli_pack = timed(lambda: run(expand(cli[0]), tree))  # noqa: B023
            cli_unpack = timed(lambda: run(expand(cli[1]), work))  # noqa: B023
            shutil.rmtree(cli_dest)
            cli_size = theirs.stat().st_size / MIB
            print(f"{fmt:6} ours  {pack:7.1f} {unpack:8.1f} {size:7.1f}")
            print(
                f"{fmt:6} cli   {cli_pack:7.1f} {cli_unpack:8.1f} {cli_size:7.1f} "
                f"{pack / cli_pack:7.2f} {unpack / cli_unpack:8.2f} {size / cli_size:6.3f}"
            )
            ours.unlink()
            theirs.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
