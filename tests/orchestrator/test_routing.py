"""The routing table: every output format has a route, and refusals name the pair."""

from __future__ import annotations

import pytest

from mesh.errors import MeshError, Reason
from mesh.formats import INPUT_FAMILIES, OUTPUT_FORMATS
from services.orchestrator import routing


def test_every_output_format_is_reachable_from_some_input() -> None:
    reachable = {out for source in INPUT_FAMILIES for out in OUTPUT_FORMATS if _routes(source, out)}
    assert reachable == set(OUTPUT_FORMATS)


def test_every_route_names_a_real_service() -> None:
    services = {s for table in routing.ROUTES.values() for s in table.values()}
    assert services <= {"image", "media", "archive"}


@pytest.mark.parametrize(
    ("source", "output", "service"),
    [
        ("jpg", "webp", "image"),
        ("heif", "jpg", "image"),
        ("svg", "png", "image"),
        ("pdf", "jpg", "image"),
        ("mp4", "webm", "media"),
        ("mkv", "mp3", "media"),
        ("mp4", "gif", "media"),
        ("gif", "mp4", "media"),
        ("flac", "mp3", "media"),
        ("png", "zip", "archive"),
        ("", "tgz", "archive"),
        ("zip", "7z", "archive"),
    ],
)
def test_pairs_go_to_the_right_service(source: str, output: str, service: str) -> None:
    assert routing.route(source, output) == service


@pytest.mark.parametrize(("source", "output"), [("mp3", "png"), ("wav", "mp4"), ("", "jpg")])
def test_impossible_pair_is_415_naming_the_pair(source: str, output: str) -> None:
    with pytest.raises(MeshError) as caught:
        routing.route(source, output)
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR
    assert caught.value.reason.http_status == 415
    assert output in caught.value.message
    assert caught.value.detail["pair"].endswith(f"->{output}")


def test_compress_keeps_the_input_format_when_it_is_an_output() -> None:
    assert routing.resolve_output("png", "") == "png"
    assert routing.resolve_output("png", "webp") == "webp"
    with pytest.raises(MeshError):
        routing.resolve_output("bmp", "")


def _routes(source: str, output: str) -> bool:
    try:
        routing.route(source, output)
    except MeshError:
        return False
    return True
