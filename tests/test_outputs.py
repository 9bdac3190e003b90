"""Every worker writes exactly the output formats the routing table sends it, and each of its
sets comes from the families in mesh.formats."""

from __future__ import annotations

import pytest

from mesh.formats import OUTPUT_FORMATS, Family, outputs_of
from services.archive import outputs as archive_outputs
from services.image import encode
from services.image import pipeline as image_pipeline
from services.media import codecs
from services.orchestrator import routing

WRITES = {
    "image": frozenset(image_pipeline.OUTPUTS),
    "media": frozenset(codecs.OUTPUTS),
    "archive": frozenset(archive_outputs.OUTPUTS),
}


@pytest.mark.parametrize("service", routing.SERVICES)
def test_each_worker_writes_what_its_routing_row_sends_it(service: str) -> None:
    assert WRITES[service] == routing.written_by(service)


def test_every_output_format_has_a_writer_and_only_gif_has_two() -> None:
    assert frozenset().union(*WRITES.values()) == set(OUTPUT_FORMATS)
    assert WRITES["image"] & WRITES["media"] == {"gif"}  # from a picture, or from a video
    assert WRITES["archive"].isdisjoint(WRITES["image"] | WRITES["media"])


def test_every_raster_output_has_an_encoder() -> None:
    assert set(encode.ENCODERS) == set(outputs_of(Family.IMAGE))


def test_sets_keep_the_contracts_order() -> None:
    assert outputs_of(Family.ARCHIVE) == ("zip", "tar", "tgz", "7z", "rar", "gz", "bz2", "xz")
    assert codecs.OUTPUTS == ("gif", "mp4", "webm", "mov", "mp3", "wav", "ogg", "m4a", "flac")
