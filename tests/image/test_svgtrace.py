from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from services.image.svgtrace import settings
from tests.corpus import CORPUS

HOPPER = CORPUS / "pillow" / "hopper.jpg"


def _trace(tmp_path: Path, name: str, **options: object) -> str:
    output = tmp_path / name
    convert(HOPPER, output, "jpg", ConversionOptions(format="svg", **options), ImageLimits())  # type: ignore[arg-type]
    text = output.read_text()
    assert ElementTree.fromstring(text).tag.endswith("svg")
    return text


def _colours(svg: str) -> set[str]:
    return set(re.findall(r'fill="(#[0-9A-Fa-f]{6})"', svg))


def test_colour_trace_keeps_many_colours_and_mono_keeps_one(tmp_path: Path) -> None:
    colour = _trace(tmp_path, "colour.svg")
    mono = _trace(tmp_path, "mono.svg", mono=True)
    assert len(_colours(colour)) > 20
    assert len(_colours(mono)) <= 2
    assert colour.count("<path") > mono.count("<path")


def test_lower_compression_traces_less_detail(tmp_path: Path) -> None:
    detailed = _trace(tmp_path, "high.svg", compression=95)
    coarse = _trace(tmp_path, "low.svg", compression=10)
    assert coarse.count("<path") < detailed.count("<path")
    assert settings(10)["filter_speckle"] > settings(95)["filter_speckle"]
