"""Hostile containers (TESTPLAN B11): reference demuxers must never be chosen, and nothing may
be opened but the one local input file."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import pytest

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.media.limits import MediaLimits
from services.media.pipeline import convert
from services.media.probe import CONTAINER_OPTIONS, DEMUXERS, open_input, probe
from tests.media.conftest import SAMPLES


class Canary:
    """A loopback TCP listener that counts every connection attempt."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def _hls(port: int) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n"
        "#EXTINF:10,\nfile:///etc/hostname\n"
        f"#EXTINF:10,\nhttp://127.0.0.1:{port}/segment.ts\n#EXT-X-ENDLIST\n"
    )


def _ffconcat(port: int) -> str:
    return f"ffconcat version 1.0\nfile file:///etc/hostname\nfile http://127.0.0.1:{port}/x.mp4\n"


@pytest.mark.parametrize("kind", ["hls", "ffconcat"])
@pytest.mark.parametrize(("suffix", "fmt"), [(".mp4", "mp4"), (".avi", "avi"), (".ts", "ts")])
def test_reference_playlists_are_rejected_without_any_connection(
    kind: str, suffix: str, fmt: str, canary: Canary, tmp_path: Path
) -> None:
    source = tmp_path / f"playlist{suffix}"
    source.write_text(_hls(canary.port) if kind == "hls" else _ffconcat(canary.port))
    output = tmp_path / "out.mp4"
    with pytest.raises(MeshError) as caught:
        convert(source, output, fmt, ConversionOptions(format="mp4"), MediaLimits())
    assert caught.value.reason in (Reason.CORRUPT_INPUT, Reason.UNSUPPORTED_FORMAT)
    assert canary.connections == 0
    assert not output.exists()


@pytest.mark.parametrize("name", ["playlist.m3u8", "list.ffconcat"])
def test_allowlist_refuses_reference_demuxers_even_when_ffmpeg_probes(
    name: str, canary: Canary, tmp_path: Path
) -> None:
    # Defence in depth: the same options without a forced demuxer still refuse HLS/concat.
    source = tmp_path / name
    source.write_text(_hls(canary.port) if name.endswith("m3u8") else _ffconcat(canary.port))
    with pytest.raises(av.error.FFmpegError):
        av.open(str(source), container_options=CONTAINER_OPTIONS)
    assert canary.connections == 0


def test_unknown_source_format_is_unsupported(tmp_path: Path) -> None:
    source = tmp_path / "playlist.m3u8"
    source.write_text(_hls(9))
    with pytest.raises(MeshError) as caught:
        open_input(source, "m3u8", MediaLimits())
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT


def test_no_reference_demuxer_is_allowed() -> None:
    allowed = {name for names in DEMUXERS.values() for name in names}
    allowed_list = set(CONTAINER_OPTIONS["format_whitelist"].split(","))
    assert allowed <= allowed_list
    assert not allowed_list & {"hls", "concat", "image2", "data", "dash", "tee", "lavfi"}
    assert CONTAINER_OPTIONS["protocol_whitelist"] == "file"


@pytest.mark.parametrize(
    ("name", "fmt", "demuxer"),
    [
        ("sample.mp4", "mp4", "mov"),
        ("sample.mkv", "mkv", "matroska"),
        ("sample.ts", "ts", "mpegts"),
        ("sample.mpg", "mpg", "mpegvideo"),
        ("sample_ac3.vob", "mpg", "mpeg"),
        ("sample.ogg", "ogg", "ogg"),
    ],
)
def test_each_sniffed_format_opens_with_its_demuxer(name: str, fmt: str, demuxer: str) -> None:
    with open_input(SAMPLES / name, fmt, MediaLimits()) as container:
        found = probe(container, MediaLimits())
    assert found.demuxer.split(",")[0] == demuxer


def test_a_file_named_like_a_url_is_read_as_a_local_file(tmp_path: Path) -> None:
    source = tmp_path / "http:evil.mp4"
    source.write_bytes((SAMPLES / "sample.mp4").read_bytes())
    with open_input(source, "mp4", MediaLimits()) as container:
        assert probe(container, MediaLimits()).video is not None
