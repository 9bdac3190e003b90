from fractions import Fraction

from mesh.options import Box, ConversionOptions, Fit, box_for
from services.media.geometry import FramePlan, plan_frames


def _plan(
    width: int, height: int, box: Box, rotation: int = 0, sar: Fraction = Fraction(1)
) -> FramePlan:
    return plan_frames(width, height, sar, rotation, box)


def test_original_size_is_rounded_down_to_even_sides() -> None:
    plan = _plan(641, 361, Box(None, None, Fit.NONE))
    assert (plan.width, plan.height) == (640, 360)


def test_inside_box_keeps_aspect_and_even_sides() -> None:
    plan = _plan(1920, 1080, box_for(ConversionOptions(resize="email")))
    assert (plan.width, plan.height) == (600, 336)


def test_inside_box_never_upscales_without_permission() -> None:
    plan = _plan(320, 240, box_for(ConversionOptions(resize="website")))
    assert (plan.width, plan.height) == (320, 240)


def test_width_preset_upscales_to_requested_even_width() -> None:
    plan = _plan(320, 240, box_for(ConversionOptions(resize="width", resize_width=1001)))
    assert (plan.width, plan.height) == (1000, 750)


def test_cover_fills_the_box_and_crops_the_centre() -> None:
    plan = _plan(640, 360, box_for(ConversionOptions(resize="instagram")))
    assert (plan.width, plan.height) == (1080, 1080)
    assert ("crop", "1080:1080") in plan.filters


def test_contain_pads_to_the_box_in_white() -> None:
    plan = _plan(640, 360, box_for(ConversionOptions(resize="ecommerce")))
    assert (plan.width, plan.height) == (2000, 2000)
    assert any(name == "pad" and "white" in args for name, args in plan.filters)


def test_quarter_turn_swaps_sides_before_boxing() -> None:
    plan = _plan(1920, 1080, box_for(ConversionOptions(resize="email")), rotation=90)
    assert (plan.width, plan.height) == (600, 1066)
    assert plan.filters[0][0] == "transpose"


def test_half_turn_flips_both_ways() -> None:
    plan = _plan(320, 240, Box(None, None, Fit.NONE), rotation=180)
    assert [name for name, _ in plan.filters[:2]] == ["hflip", "vflip"]
    assert (plan.width, plan.height) == (320, 240)


def test_non_square_pixels_become_square() -> None:
    plan = _plan(720, 480, Box(None, None, Fit.NONE), sar=Fraction(32, 27))
    assert (plan.width, plan.height) == (852, 480)
    assert plan.filters[-1] == ("setsar", "1")
