"""The media conversion entry point: validate the pair, probe and enforce limits before any
frame is decoded, plan copy-or-encode per stream, run it, and measure what was written.

A compress job keeping the format hands back the source itself when the re-encode is not
smaller (unless a resize or `stripMetadata` asked for something the source is not).

Pure synchronous library code; the worker runs `convert` inside a sandboxed child process and
progress goes out through `mesh.sandbox.report_progress`. Each step is a span of the task's
trace (`mesh.tracing.stage`): probe, transcode (decoding, filtering and encoding stream through
each other), measure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av.error

from mesh import sandbox, tracing
from mesh.errors import MeshError, Reason
from mesh.formats import INPUT_FAMILIES, Family
from mesh.options import ConversionOptions, Mode
from mesh.outcome import Outcome, smaller_or_original
from services.media import codecs, gif, plan, webp
from services.media.budget import Budget, budget_for, unreachable
from services.media.codecs import Target
from services.media.lanes import Progress, Timing
from services.media.limits import MediaLimits
from services.media.plan import Plan, compressing, make_plan
from services.media.probe import Probe, first_frame_rotation, open_input, probe
from services.media.transcode import transcode

LOSSY_AUDIO = frozenset({"aac", "libopus", "libmp3lame"})
# A second target-size attempt aims this far under the proportional estimate.
RETRY_MARGIN = 0.9


def reporter(duration: float | None, start: float = 0.0, span: float = 1.0) -> Progress:
    def report(seconds: float) -> None:
        if duration:
            sandbox.report_progress(start + span * min(1.0, max(0.0, seconds / duration)))

    return report


def check_pair(found: Probe, target: Target, source_format: str) -> None:
    if target.family is Family.VIDEO and found.video is None:
        if INPUT_FAMILIES.get(source_format) is Family.AUDIO:
            message = f"Audio cannot be converted to {target.name}; choose an audio format."
        else:
            message = f"The input has no video track to convert to {target.name}."
        raise MeshError(Reason.UNSUPPORTED_PAIR, message, format=target.name)
    if target.family is Family.AUDIO and found.audio is None:
        raise MeshError(
            Reason.NO_AUDIO_TRACK,
            f"The input has no audio track to convert to {target.name}.",
            format=target.name,
        )


def _run(
    source: Path, source_format: str, found: Probe, plan: Plan, *, output: Path, limits: MediaLimits
) -> None:
    if plan.target.name == "gif" and plan.video is not None:
        first = Timing(found.start_time, limits, reporter(found.duration, 0, 0.5))
        palette = gif.palette_for(source, source_format, found, plan.video, first)
        second = Timing(found.start_time, limits, reporter(found.duration, 0.5, 0.5))
        transcode(source, source_format, found, plan, output, timing=second, palette=palette)
    else:
        timing = Timing(found.start_time, limits, reporter(found.duration))
        transcode(source, source_format, found, plan, output, timing=timing)


def measure(output: Path, target: Target, quality: int | None) -> Outcome:
    """The facts of a written output, read back from its header."""
    with open_input(output, target.name, MediaLimits()) as container:
        written = probe(container, MediaLimits())
    width = written.video.width if written.video else None
    height = written.video.height if written.video else None
    return Outcome(target.name, target.mime_type, width, height, written.duration, quality)


def _measure(output: Path, target: Target, options: ConversionOptions, plan: Plan) -> Outcome:
    lossy = (plan.video is not None and plan.video.codec != "gif") or (
        plan.audio is not None and plan.audio.codec in LOSSY_AUDIO
    )
    return measure(output, target, options.compression if lossy and not options.lossless else None)


def orient(source: Path, source_format: str, found: Probe, limits: MediaLimits) -> Probe:
    """The probe with the display rotation, which FFmpeg attaches to decoded frames."""
    if found.video is None:
        return found
    rotation = first_frame_rotation(source, source_format, found.video.index, limits)
    return dataclasses.replace(found, video=dataclasses.replace(found.video, rotation=rotation))


def _budget(
    options: ConversionOptions, target: Target, found: Probe, scale: float
) -> Budget | None:
    if options.mode is not Mode.TARGET_SIZE:
        return None
    audio = target.audio_codec if found.audio is not None and not options.lossless else None
    video = target.video_codec is not None and target.name != "gif"
    return budget_for(options.target_bytes, found.duration, video, audio, scale)


def _convert(
    source: Path,
    output: Path,
    source_format: str,
    options: ConversionOptions,
    limits: MediaLimits,
) -> Outcome:
    target = codecs.target_for(options.format, source_format)
    with tracing.stage("probe", source_format=source_format):
        with open_input(source, source_format, limits) as container:
            found = probe(container, limits)
        check_pair(found, target, source_format)
        if options.auto_orient and make_plan(found, target, options, None).video is not None:
            found = orient(source, source_format, found, limits)  # only new frames are turned
    scale = 1.0
    for attempt in range(2):
        budget = _budget(options, target, found, scale)
        plan = make_plan(found, target, options, budget)
        with tracing.stage("transcode", output_format=target.name, attempt=attempt + 1):
            _run(source, source_format, found, plan, output=output, limits=limits)
        size = output.stat().st_size
        if options.mode is not Mode.TARGET_SIZE or size <= options.target_bytes:
            with tracing.stage("measure"):
                return _measure(output, target, options, plan)
        if budget is None or attempt == 1:
            break
        scale *= options.target_bytes / size * RETRY_MARGIN
    raise unreachable(options.target_bytes, f"the smallest encode was {size} bytes")


def convert(
    source: Path,
    output: Path,
    source_format: str,
    options: ConversionOptions,
    limits: MediaLimits,
) -> Outcome:
    """Converts `source` (sniffed as `source_format`) into `output` as `options.format`."""
    frames = output.with_name(output.name + ".frames.mkv")
    original = source
    try:
        if source_format == "webp" and webp.is_animated(source):
            with tracing.stage("decode", source_format="webp"):
                source, source_format = webp.to_video(source, frames, limits), "mkv"
        outcome = _convert(source, output, source_format, plan.effective(options), limits)
        if compressing(options) and options.resize == "original" and not options.strip_metadata:
            return smaller_or_original(original, output, outcome)
        return outcome
    except MeshError:
        output.unlink(missing_ok=True)
        raise
    except av.error.FFmpegError as error:
        output.unlink(missing_ok=True)
        raise MeshError(
            Reason.CORRUPT_INPUT, "The media could not be decoded; it may be damaged."
        ) from error
    finally:
        frames.unlink(missing_ok=True)
