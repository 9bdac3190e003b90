"""Pack and unpack a generated mixed tree with the archive service vs the zip, tar and 7z
command lines at the same levels, in the same run. Prints wall and CPU seconds, sizes and
ratios (ours / CLI).

    .venv/bin/python -m bench.archive [--size-mb 200] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import lzma
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.archive import ArchiveLimits, extract, levels, pack_directory

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


@dataclass(frozen=True)
class Cost:
    wall: float
    cpu: float


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object]) -> Cost:
    """Wall and CPU seconds (this process and the children it waited for)."""
    cpu, started = _cpu(), time.perf_counter()
    action()
    return Cost(time.perf_counter() - started, _cpu() - cpu)


def run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def clis(seven: str | None) -> dict[str, tuple[list[str], list[str]] | None]:
    """Each format's command lines at the levels our side uses for COMPRESSION."""
    deflate = levels.deflate_level(COMPRESSION)
    preset = levels.lzma_preset(COMPRESSION)
    return {
        "zip": (
            ["zip", f"-{deflate}", "-qr", "{out}", "."],
            ["unzip", "-q", "{out}", "-d", "{dest}"],
        )
        if shutil.which("zip") and shutil.which("unzip")
        else None,
        "tgz": (
            ["tar", "-I", f"gzip -{deflate}", "-cf", "{out}", "."],
            ["tar", "-xzf", "{out}", "-C", "{dest}"],
        ),
        "7z": (
            [seven, "a", "-bd", f"-mx={preset}", "-m0=lzma2", "{out}", "."],
            [seven, "x", "-bd", "{out}", "-o{dest}"],
        )
        if seven
        else None,
    }


def expand(args: list[str], fill: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for key, value in fill.items():
            arg = arg.replace(key, value)  # noqa: PLW2901
        out.append(arg)
    return out


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
        print(
            f"tree: {len(entries)} files, {total / MIB:.0f} MiB; compression={COMPRESSION} "
            f"(deflate {levels.deflate_level(COMPRESSION)}, LZMA2 preset "
            f"{levels.lzma_preset(COMPRESSION)} on both sides)"
        )
        print("wall s / CPU s; x = ours / CLI (CPU counts the CLI's helpers, e.g. tar's gzip)")
        limits = ArchiveLimits(max_ratio=1e9)
        seven = shutil.which("7zz") or shutil.which("7z") or shutil.which("7za")
        print(
            f"{'format':6} {'tool':5} {'pack s':>13} {'unpack s':>13} {'MiB':>7} "
            f"{'pack x':>11} {'unpack x':>11} {'size x':>6}"
        )
        for fmt, cli in clis(seven).items():
            ours = work / f"ours.{fmt}"
            pack = timed(lambda: pack_directory(entries, ours, fmt, COMPRESSION))  # noqa: B023
            dest = work / "ours-out"
            unpack = timed(lambda: extract(ours, fmt, dest, limits))  # noqa: B023
            shutil.rmtree(dest)
            size = ours.stat().st_size / MIB
            print(f"{fmt:6} ours  {_pair(pack)} {_pair(unpack)} {size:7.1f}")
            if cli is None:
                print(f"{fmt:6} (no {fmt} CLI here)")
                ours.unlink()
                continue
            theirs = work / f"cli.{fmt}"
            cli_dest = work / "cli-out"
            cli_dest.mkdir()
            fill = {"{out}": str(theirs), "{dest}": str(cli_dest)}
            cli_pack = timed(lambda: run(expand(cli[0], fill), tree))  # noqa: B023
            cli_unpack = timed(lambda: run(expand(cli[1], fill), work))  # noqa: B023
            shutil.rmtree(cli_dest)
            cli_size = theirs.stat().st_size / MIB
            print(
                f"{fmt:6} cli   {_pair(cli_pack)} {_pair(cli_unpack)} {cli_size:7.1f} "
                f"{_ratio(pack, cli_pack)} {_ratio(unpack, cli_unpack)} {size / cli_size:6.3f}"
            )
            if fmt == "7z":
                # Our 7z is py7zr over Python's lzma, i.e. liblzma: the same LZMA2 preset over
                # the same bytes with liblzma alone (no container) shows which encoder the
                # 7z CLI's lead comes from.
                raw = timed(lambda: _liblzma(entries))
                print(
                    f"{fmt:6} liblzma alone {_pair(raw)}  pack x ours/liblzma {_ratio(pack, raw)}"
                )
            ours.unlink()
            theirs.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _liblzma(entries: list[tuple[str, Path]]) -> None:
    preset = levels.lzma_preset(COMPRESSION)
    compressor = lzma.LZMACompressor(
        format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": preset}]
    )
    for _, path in entries:
        with path.open("rb") as source:
            while chunk := source.read(MIB):
                compressor.compress(chunk)
    compressor.flush()


def _pair(cost: Cost) -> str:
    return f"{cost.wall:6.1f}/{cost.cpu:6.1f}"


def _ratio(ours: Cost, theirs: Cost) -> str:
    return f"{ours.wall / theirs.wall:5.2f}/{ours.cpu / max(theirs.cpu, 1e-6):5.2f}"


if __name__ == "__main__":
    main()
