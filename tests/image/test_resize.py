from __future__ import annotations

import pytest

from mesh.options import PRESETS, Box, ConversionOptions, Fit, box_for
from services.image.resize import plan


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_plans_a_positive_size(preset: str) -> None:
    options = ConversionOptions(resize=preset, resize_width=500, resize_height=500)
    result = plan(box_for(options), 1800, 1200)
    assert result.width > 0
    assert result.height > 0


def test_inside_never_upscales_without_permission() -> None:
    result = plan(Box(1920, None, Fit.INSIDE), 800, 600)
    assert (result.width, result.height) == (800, 600)
    assert result.size == "down"


def test_contain_pads_to_the_exact_box() -> None:
    result = plan(Box(2000, 2000, Fit.CONTAIN), 300, 100)
    assert (result.width, result.height) == (2000, 2000)
    assert result.pad


def test_cover_without_upscale_stays_inside_a_small_source() -> None:
    result = plan(Box(1000, 1000, Fit.COVER), 400, 200)
    assert (result.width, result.height) == (400, 200)
