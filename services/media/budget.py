"""Target-size mode: a byte budget becomes audio and video bitrates. The encoders are driven by
average bitrate with a capped peak; the pipeline checks the written size and retries once with
a proportionally smaller budget if the muxed file still came out too large."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import MeshError, Reason

# Share of the budget kept back for container overhead (headers, index, per-packet framing).
OVERHEAD = 0.05
MIN_VIDEO_BPS = 20_000
AUDIO_RANGE_BPS = {
    "aac": (16_000, 320_000),
    "libopus": (6_000, 320_000),
    "libmp3lame": (32_000, 320_000),
}
_MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


@dataclass(frozen=True)
class Budget:
    video_bps: int
    audio_bps: int


def unreachable(target_bytes: int, why: str) -> MeshError:
    return MeshError(
        Reason.TARGET_UNREACHABLE,
        f"The output cannot be made as small as {target_bytes} bytes: {why}.",
        targetBytes=target_bytes,
    )


def budget_for(
    target_bytes: int,
    duration: float | None,
    video: bool,
    audio_codec: str | None,
    scale: float = 1.0,
) -> Budget | None:
    """The bitrates for the budget, or None when the output has no bitrate to choose
    (lossless audio, GIF): such outputs are written once and then measured."""
    if target_bytes <= 0:
        raise MeshError(
            Reason.INVALID_FIELD,
            "targetBytes must be positive in target-size mode.",
            fields=["targetBytes"],
        )
    if not duration:
        raise unreachable(target_bytes, "the input does not declare its duration")
    total = target_bytes * 8 * (1 - OVERHEAD) * scale / duration
    low, high = AUDIO_RANGE_BPS.get(audio_codec or "", (0, 0))
    if not video:
        if audio_codec not in AUDIO_RANGE_BPS:
            return None
        if total < low:
            raise unreachable(
                target_bytes, "the audio bitrate would be below what the codec allows"
            )
        bps = min(int(total), high)
        if audio_codec == "libmp3lame":
            bps = max(b for b in _MP3_BITRATES if b * 1000 <= bps) * 1000
        return Budget(0, bps)
    audio = 0 if audio_codec is None else int(min(max(total * 0.1, low), 128_000))
    video_bps = int(total - audio)
    if video_bps < MIN_VIDEO_BPS:
        raise unreachable(target_bytes, "the video bitrate would be too low to encode")
    return Budget(video_bps, audio)
