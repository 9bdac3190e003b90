"""The media pipeline vs the ffmpeg command line with the same codec settings, on the same
generated input, in the same run. Prints wall and CPU seconds and ratios (ours / CLI).

    .venv/bin/python -m bench.media [--seconds 10] [--size 960x540] [--workdir /tmp]

CPU time is user+system from getrusage: our side is this process (PyAV runs in-process, with
FFmpeg's own threads), the CLI side is the waited-for child. Note the CLI is the system ffmpeg,
which may be a different FFmpeg/x264/libvpx release than the one inside PyAV's wheel.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from mesh.options import ConversionOptions
from services.media import codecs, gif
from services.media.limits import MediaLimits
from services.media.pipeline import convert


@dataclass(frozen=True)
class Cost:
    wall: float
    cpu: float


def measure(action: Callable[[], object]) -> Cost:
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    cpu_before, started = cpu(), time.perf_counter()
    action()
    return Cost(time.perf_counter() - started, cpu() - cpu_before)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def generate(root: Path, seconds: int, size: str) -> dict[str, Path]:
    mp4, mkv, wav = root / "in.mp4", root / "in.mkv", root / "in.wav"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=30:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:duration={seconds}:sample_rate=48000",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        str(mp4),
    )
    ffmpeg("-i", str(mp4), "-c", "copy", str(mkv))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:duration={seconds * 6}:sample_rate=44100",
        "-ac",
        "2",
        str(wav),
    )
    return {"mp4": mp4, "mkv": mkv, "wav": wav}


def _flags(options: dict[str, str]) -> list[str]:
    return [arg for key, value in options.items() for arg in (f"-{key}", value)]


def cases(
    inputs: dict[str, Path], out: Path
) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    limits = MediaLimits()

    def ours(source: str, fmt: str, output: str, **options: object) -> Callable[[], object]:
        opts = ConversionOptions(**options)  # type: ignore[arg-type]
        return lambda: convert(inputs[source], out / output, fmt, opts, limits)

    def cli(*args: str) -> Callable[[], object]:
        return lambda: ffmpeg(*args)

    vp9 = _flags(codecs.vp9_options(82, False))
    x264 = _flags(codecs.x264_options(70, False))
    opus = str(codecs.audio_bitrate("libopus", 82, 2))
    aac = str(codecs.audio_bitrate("aac", 70, 2))
    palette = out / "palette.png"
    scale = f"fps={gif.MAX_FPS},scale={gif.MAX_WIDTH}:-2"

    def gif_cli() -> None:
        ffmpeg("-i", str(inputs["mp4"]), "-vf", f"{scale},palettegen=stats_mode=full", str(palette))
        ffmpeg(
            "-i",
            str(inputs["mp4"]),
            "-i",
            str(palette),
            "-lavfi",
            f"{scale}[x];[x][1:v]paletteuse=dither=sierra2_4a",
            str(out / "cli.gif"),
        )

    def pyav_lame() -> None:
        """The old mp3 path: PyAV's own libmp3lame, same settings (services/media/lame.py)."""
        with av.open(str(inputs["wav"])) as source, av.open(str(out / "pyav.mp3"), "w") as sink:
            stream = sink.add_stream("libmp3lame", rate=44100)
            stream.codec_context.layout = "stereo"
            stream.codec_context.format = "s16p"
            stream.codec_context.options = {
                "flags": "+qscale",
                "global_quality": str(codecs.mp3_vbr_quality(82) * 118),
            }
            for frame in source.decode(audio=0):
                frame.pts = None
                sink.mux(stream.encode(frame))
            sink.mux(stream.encode(None))

    mp3_cli = cli(
        "-i",
        str(inputs["wav"]),
        "-c:a",
        "libmp3lame",
        "-q:a",
        str(codecs.mp3_vbr_quality(82)),
        str(out / "cli.mp3"),
    )
    return [
        (
            "mp4 -> webm (VP9/Opus, q82)",
            ours("mp4", "mp4", "ours.webm", format="webm"),
            cli(
                "-i",
                str(inputs["mp4"]),
                "-c:v",
                "libvpx-vp9",
                *vp9,
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "libopus",
                "-b:a",
                opus,
                str(out / "cli.webm"),
            ),
        ),
        (
            "mkv -> mp4 (H.264/AAC, q70)",
            ours("mkv", "mkv", "ours.mp4", format="mp4", compression=70),
            cli(
                "-i",
                str(inputs["mkv"]),
                "-c:v",
                "libx264",
                *x264,
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                aac,
                "-movflags",
                "+faststart",
                str(out / "cli.mp4"),
            ),
        ),
        (
            "mkv -> mp4 (remux, q82)",
            ours("mkv", "mkv", "ours-remux.mp4", format="mp4"),
            cli(
                "-i",
                str(inputs["mkv"]),
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                str(out / "cli-remux.mp4"),
            ),
        ),
        ("wav -> mp3 (LAME VBR q2)", ours("wav", "wav", "ours.mp3", format="mp3"), mp3_cli),
        ("wav -> mp3, PyAV's LAME (before)", pyav_lame, mp3_cli),
        ("video -> gif (2-pass palette)", ours("mp4", "mp4", "ours.gif", format="gif"), gif_cli),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        inputs = generate(root, args.seconds, args.size)
        print(f"input: {args.seconds} s testsrc2 {args.size} 30 fps + stereo sine (wav: x6 long)")
        header = (
            f"{'case':32} {'ours s':>8} {'cli s':>8} {'wall x':>7}"
            f" {'ours cpu':>9} {'cli cpu':>8} {'cpu x':>6}"
        )
        print(header)
        for name, ours, cli in cases(inputs, root):
            mine, theirs = measure(ours), measure(cli)
            print(
                f"{name:32} {mine.wall:8.2f} {theirs.wall:8.2f} {mine.wall / theirs.wall:7.2f}"
                f" {mine.cpu:9.2f} {theirs.cpu:8.2f} {mine.cpu / max(theirs.cpu, 1e-6):6.2f}"
            )


if __name__ == "__main__":
    main()
