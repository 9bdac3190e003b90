import pytest

from mesh.errors import MeshError, Reason
from services.media.budget import budget_for


def test_video_budget_splits_audio_and_video_within_the_target() -> None:
    budget = budget_for(1_000_000, 10.0, True, "aac")
    assert budget is not None
    assert budget.video_bps > budget.audio_bps > 0
    assert (budget.video_bps + budget.audio_bps) * 10 / 8 <= 1_000_000


def test_mp3_budget_uses_a_standard_bitrate() -> None:
    budget = budget_for(100_000, 10.0, False, "libmp3lame")
    assert budget is not None
    assert budget.audio_bps == 64_000


def test_lossless_audio_has_no_bitrate_to_choose() -> None:
    assert budget_for(100_000, 10.0, False, "flac") is None


def test_impossible_budget_is_unreachable() -> None:
    with pytest.raises(MeshError) as caught:
        budget_for(1_000, 60.0, True, "aac")
    assert caught.value.reason is Reason.TARGET_UNREACHABLE


def test_unknown_duration_is_unreachable() -> None:
    with pytest.raises(MeshError) as caught:
        budget_for(1_000_000, None, True, "aac")
    assert caught.value.reason is Reason.TARGET_UNREACHABLE
