from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from mesh.errors import MeshError, Reason
from mesh.options import ConversionOptions
from services.image.pipeline import ImageLimits, convert
from services.image.svgsafe import MAX_EXPANSION, sanitise
from tests.corpus import CORPUS


class _Canary:
    """A loopback listener that counts every connection made to it."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            client.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


def _render(tmp_path: Path, svg: str) -> Image.Image:
    source = tmp_path / "in.svg"
    source.write_text(svg)
    output = tmp_path / "out.png"
    convert(source, output, "svg", ConversionOptions(format="png"), ImageLimits())
    return Image.open(output)


def test_external_references_are_never_fetched(tmp_path: Path) -> None:
    canary = _Canary()
    url = f"http://127.0.0.1:{canary.port}/x"
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
      width="40" height="40">
      <style>@import url({url}/style.css); rect {{ fill: url({url}/p.svg#p) }}</style>
      <image href="{url}/a.png" width="40" height="40"/>
      <image xlink:href="{url}/b.png" width="40" height="40"/>
      <use href="{url}/c.svg#x"/>
      <rect width="10" height="10" fill="red"/>
    </svg>"""
    try:
        rendered = _render(tmp_path, svg)
    finally:
        canary.close()
    assert canary.connections == 0
    assert rendered.size == (40, 40)


def test_xxe_entities_are_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    svg = f"""<?xml version="1.0"?>
    <!DOCTYPE svg [<!ENTITY x SYSTEM "file://{secret}">]>
    <svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><text>&x;</text></svg>"""
    cleaned = sanitise(svg.encode())
    assert b"ENTITY" not in cleaned
    assert b"&x;" not in cleaned
    assert _render(tmp_path, svg).size == (20, 20)


def test_billion_laughs_is_defused(tmp_path: Path) -> None:
    entities = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)
    )
    svg = f"""<?xml version="1.0"?><!DOCTYPE svg [{entities}]>
    <svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><text>&j;</text></svg>"""
    assert _render(tmp_path, svg).size == (20, 20)


def test_imgproxy_sample_renders_its_rectangle(tmp_path: Path) -> None:
    rendered = _render(tmp_path, (CORPUS / "imgproxy" / "test1.svg").read_text())
    assert rendered.size == (200, 100)
    assert ImageStat.Stat(rendered.convert("L").crop((20, 20, 180, 80))).mean[0] < 10


@pytest.mark.parametrize(
    "fragment",
    [b'href="#local"', b'xlink:href="data:image/png;base64,AAAA"', b"url(#gradient)"],
)
def test_local_references_survive(fragment: bytes) -> None:
    assert fragment in sanitise(b"<svg><g " + fragment + b"/></svg>")


def test_internal_entities_are_expanded_and_external_ones_are_not() -> None:
    svg = b"""<!DOCTYPE svg [<!ENTITY fill "green"><!ENTITY leak SYSTEM "file:///etc/passwd">
      <!ENTITY shape "<rect href='http://127.0.0.1/x' fill='&fill;'/>">]>
      <svg><rect fill="&fill;"/>&shape;<text>&leak;</text></svg>"""
    cleaned = sanitise(svg)
    assert b'<rect fill="green"/>' in cleaned
    assert b"<rect  fill='green'/>" in cleaned  # the entity's markup, its href removed
    assert b"&" not in cleaned and b"ENTITY" not in cleaned and b"127.0.0.1" not in cleaned


def test_billion_laughs_expansion_stays_small() -> None:
    entities = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)
    )
    svg = f"<!DOCTYPE svg [{entities}]><svg><text>&j;</text></svg>".encode()
    cleaned = sanitise(svg)
    assert len(cleaned) < len(svg) + MAX_EXPANSION + 1024
    assert b"&" not in cleaned


def test_import_without_semicolon_does_not_swallow_the_document() -> None:
    svg = b'<svg><style>@import "../x.css"\n</style><rect fill="red"/></svg>'
    cleaned = sanitise(svg)
    assert b"@import" not in cleaned
    assert b'<rect fill="red"/></svg>' in cleaned


def test_legacy_encoding_is_transcoded_to_utf8() -> None:
    text = "Привет мир"
    svg = f'<?xml version="1.0" encoding="Windows-1251"?><svg><text>{text}</text></svg>'
    cleaned = sanitise(svg.encode("cp1251"))
    assert cleaned.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert text.encode("utf-8") in cleaned


def test_svg_to_svg_is_refused_without_a_sanitising_writer(tmp_path: Path) -> None:
    # B9: SVG output is only ever traced from pixels; passing an SVG through would need a
    # sanitiser matching imgproxy/test1.sanitized.svg, which is not offered.
    with pytest.raises(MeshError) as caught:
        convert(
            CORPUS / "imgproxy" / "test1.svg",
            tmp_path / "out.svg",
            "svg",
            ConversionOptions(format="svg"),
            ImageLimits(),
        )
    assert caught.value.reason is Reason.UNSUPPORTED_PAIR
    assert not (tmp_path / "out.svg").exists()
