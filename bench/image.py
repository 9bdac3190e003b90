"""The image pipeline's convert() against a direct pyvips call doing the same work on the same
file, in the same run: thumbnail to 500 px, full size to WebP, full size to AVIF, on a
1800x1200 corpus photo and a generated 24 MP photo. Prints the best of `--repeat` wall times
and the ratio ours / direct; then WebP and AVIF effort settings (time and size) on the photo;
then the peak RSS of a 100 MP JPEG -> WebP and -> JPEG in a child process, ours and direct.

    .venv/bin/python -m bench.image [--repeat 3] [--workdir /tmp] [--skip-rss]

Peak RSS is the child's ru_maxrss from getrusage(RUSAGE_CHILDREN), read by a fresh wrapper
process per measurement so one run's peak never hides another's.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyvips

from mesh.options import ConversionOptions
from services.image import encode
from services.image.pipeline import ImageLimits, convert
from tests.corpus import CORPUS

PHOTO = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"
THUMBNAIL = 500
QUALITY = 82  # the API's default compression; the same numbers on both sides
AVIF_Q = encode.quality_for("avif", QUALITY)
WEBP_EFFORT, AVIF_EFFORT = encode.LOSSY_WEBP_EFFORT, encode.AVIF_EFFORT


def best_of(repeat: int, action: Callable[..., object], *args: object, **kwargs: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return min(times)


def generate(photo: Path, path: Path, megapixels: float) -> Path:
    """The corpus photo scaled up to `megapixels` with a little grain, as a Q 90 JPEG."""
    source = pyvips.Image.new_from_file(str(photo))
    scale = (megapixels * 1e6 / (source.width * source.height)) ** 0.5
    big = source.resize(scale, kernel="linear")
    grain = pyvips.Image.gaussnoise(big.width, big.height, sigma=6, mean=0)
    (big + grain).cast("uchar").jpegsave(str(path), Q=90)
    return path


def ours(source: Path, output: Path, **options: object) -> None:
    convert(source, output, "jpg", ConversionOptions(**options), ImageLimits())  # type: ignore[arg-type]


def direct(operation: str, source: Path, output: Path) -> None:
    if operation == "thumbnail":
        pyvips.Image.thumbnail(str(source), THUMBNAIL).jpegsave(str(output), Q=QUALITY)
        return
    image = pyvips.Image.new_from_file(str(source), access="sequential")
    if operation == "webp":
        image.webpsave(str(output), Q=QUALITY, effort=WEBP_EFFORT)
    else:
        image.heifsave(str(output), Q=AVIF_Q, compression="av1", effort=AVIF_EFFORT)


OPERATIONS: dict[str, dict[str, object]] = {
    "thumbnail": {"format": "jpg", "resize": "width", "resize_width": THUMBNAIL},
    "webp": {"format": "webp"},
    "avif": {"format": "avif"},
}


def compare(inputs: dict[str, Path], root: Path, repeat: int) -> None:
    print(f"{'input':<10} {'operation':<10} {'ours s':>8} {'direct s':>9} {'ratio':>6}")
    for label, source in inputs.items():
        for operation, options in OPERATIONS.items():
            suffix = "jpg" if operation == "thumbnail" else operation
            mine = best_of(repeat, ours, source, root / f"o.{suffix}", **options)
            theirs = best_of(repeat, direct, operation, source, root / f"d.{suffix}")
            print(f"{label:<10} {operation:<10} {mine:8.3f} {theirs:9.3f} {mine / theirs:6.2f}")


def efforts(source: Path, root: Path, repeat: int) -> None:
    image = pyvips.Image.new_from_file(str(source)).copy_memory()
    print(f"\n{'encoder':<8} {'effort':>6} {'seconds':>8} {'KiB':>7}")
    for effort in (0, 2, 4, 6):
        path = root / f"e{effort}.webp"
        seconds = best_of(repeat, image.webpsave, str(path), Q=QUALITY, effort=effort)
        print(f"{'webp':<8} {effort:>6} {seconds:8.3f} {path.stat().st_size / 1024:7.0f}")
    for effort in (0, 1, 2, 4):
        path = root / f"e{effort}.avif"
        seconds = best_of(
            repeat, image.heifsave, str(path), Q=AVIF_Q, compression="av1", effort=effort
        )
        print(f"{'avif':<8} {effort:>6} {seconds:8.3f} {path.stat().st_size / 1024:7.0f}")


def peak_rss_mib(side: str, source: Path, output: Path) -> float:
    """Runs a wrapper that runs the conversion as its only child and reports that child's peak."""
    wrapper = subprocess.run(
        [sys.executable, "-m", "bench.image", "--measure", side, str(source), str(output)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(wrapper.stdout.strip())


def measure_child(side: str, source: str, output: str) -> None:
    subprocess.run([sys.executable, "-m", "bench.image", "--run", side, source, output], check=True)
    kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(kib / 1024)


def run_child(side: str, source: str, output: str) -> None:
    who, fmt = side.split("-")
    if who == "ours":
        ours(Path(source), Path(output), format=fmt)
    elif fmt == "webp":
        direct("webp", Path(source), Path(output))
    else:
        pyvips.Image.new_from_file(source, access="sequential").jpegsave(output, Q=QUALITY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--measure", nargs=3, metavar=("SIDE", "SOURCE", "OUTPUT"))
    parser.add_argument("--run", nargs=3, metavar=("SIDE", "SOURCE", "OUTPUT"))
    args = parser.parse_args()
    if args.measure:
        measure_child(*args.measure)
        return
    if args.run:
        run_child(*args.run)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        root = Path(workdir)
        big = generate(PHOTO, root / "24mp.jpg", 24)
        compare({"1800x1200": PHOTO, "24 MP": big}, root, args.repeat)
        efforts(PHOTO, root, args.repeat)
        if args.skip_rss:
            return
        huge = generate(PHOTO, root / "100mp.jpg", 99.9)
        size = pyvips.Image.new_from_file(str(huge))
        print(f"\npeak RSS, {size.width}x{size.height} JPEG (goal < 300 MiB)")
        for side in ("ours-webp", "direct-webp", "ours-jpg", "direct-jpg"):
            output = root / f"out.{side.split('-')[1]}"
            print(f"{side:<12} {peak_rss_mib(side, huge, output):8.0f} MiB")


if __name__ == "__main__":
    main()
