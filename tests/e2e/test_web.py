"""The page at `/` in a real browser (Debian's headless Chromium, driven by Playwright) against
the real mesh: a key entered and kept, three files dropped, upload and processing followed to
the end, an output downloaded and checked byte for byte and by a second decoder, screenshots
saved; the same on a phone-sized screen, there with the file picker and the keyboard too."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from launcher.mesh import LocalMesh
from services.gateway.web import CONTENT_SECURITY_POLICY
from tests.corpus import CORPUS
from tests.e2e.conftest import KEYS, auth

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FILES = (
    "pillow/hopper.jpg",
    "exif-orientation-examples/Landscape_6.jpg",
    "go-mediainfo/sample.wav",
)
PHONE_FILES = (
    "pillow/hopper.jpg",
    "exif-orientation-examples/Landscape_6.jpg",
    "pillow/hopper.webp",
)
DEADLINE_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is needed: make system-deps installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Browser, mesh: LocalMesh, width: int) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    response = page.goto(f"{mesh.http_url}/")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    page.wait_for_selector("html[data-ready]")
    return page, problems


def enter_key(page: Page) -> None:
    page.fill("#api-key", KEYS["acme"])
    page.click("#key-save")
    page.wait_for_selector("#key-status:has-text('accepted')")


def drop_files(page: Page, relatives: tuple[str, ...]) -> None:
    """A real drop event on the drop zone, carrying the files in a DataTransfer."""
    payload = [
        {"name": Path(r).name, "data": base64.b64encode((CORPUS / r).read_bytes()).decode()}
        for r in relatives
    ]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const file of files) {
                const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], file.name));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def finished_job(page: Page, mesh: LocalMesh) -> dict[str, Any]:
    page.wait_for_selector("#job[data-status]", timeout=DEADLINE_MS)
    assert page.get_attribute("#job", "data-status") == "completed", page.inner_text("#job")
    job_id = page.get_attribute("#job", "data-job-id")
    job = httpx.get(f"{mesh.http_url}/api/jobs/{job_id}", headers=auth(), timeout=30).json()
    assert isinstance(job, dict)
    return job


def fetch_output(job: dict[str, Any], index: int) -> bytes:
    url = job["results"]["files"][index]["downloadUrl"]
    response = httpx.get(url, headers=auth(), timeout=30)
    assert response.status_code == 200
    return response.content


def check_download(
    page: Page, job: dict[str, Any], tmp_path: Path, name: str, expected_format: str
) -> None:
    """The page's download of `name`'s output is the server's output, byte for byte, in a
    format that Pillow (not the libvips that wrote it) decodes at the source's size."""
    index = next(
        i
        for i, f in enumerate(job["results"]["files"])
        if name in (f["filename"], f.get("originalFilename"))
    )
    with page.expect_download() as started:
        page.click(f"li[data-result='{name}'] a.button-link")
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    expected = fetch_output(job, index)
    assert saved.read_bytes() == expected
    assert saved.suffix == f".{expected_format.lower()}"
    with Image.open(io.BytesIO(expected)) as image:
        assert (image.format, image.size) == (expected_format, (128, 128))


def test_drop_three_files_convert_and_download(
    browser: Browser, mesh: LocalMesh, tmp_path: Path
) -> None:
    page, problems = open_page(browser, mesh, 1280)
    enter_key(page)
    drop_files(page, FILES)
    assert page.locator("#file-list li").count() == 3
    page.check("#all-archive")
    page.click("#start")
    job = finished_job(page, mesh)
    assert [f["status"] for f in job["results"]["files"]] == ["completed"] * 3
    assert job["results"]["archive"]["status"] == "completed"
    assert page.locator("#archive a").inner_text() == "Download all as zip"
    with page.expect_download() as started:
        page.click("#archive a")
    bundle = tmp_path / "all.zip"
    started.value.save_as(bundle)
    listing = subprocess.run(
        ["bsdtar", "-tf", bundle], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert len(listing) == 3 and {Path(name).suffix for name in listing} == {".webp", ".mp3"}
    assert [f["mimeType"] for f in job["results"]["files"]] == [
        "image/webp",
        "image/webp",
        "audio/mpeg",
    ]
    assert page.locator("#upload-bar").get_attribute("value") == "100"
    assert page.locator("li[data-result] img.preview").count() == 2
    check_download(page, job, tmp_path, "hopper.jpg", "WEBP")
    # The key stays in the browser: a reload finds it without asking again.
    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert page.input_value("#api-key") == KEYS["acme"]
    page.screenshot(path=str(tmp_path / "page-1280.png"), full_page=True)
    assert (tmp_path / "page-1280.png").stat().st_size > 10_000
    assert not problems, problems


def test_the_same_at_phone_width_and_by_keyboard(
    browser: Browser, mesh: LocalMesh, tmp_path: Path
) -> None:
    page, problems = open_page(browser, mesh, 390)
    enter_key(page)
    drop_files(page, PHONE_FILES)
    # The picker adds files too; one is taken out again with the keyboard alone.
    page.set_input_files("#file-input", [str(CORPUS / "pillow/hopper.png")])
    assert page.locator("#file-list li").count() == 4
    page.focus("#file-list li[data-file='hopper.png'] button")
    page.keyboard.press("Enter")
    assert page.locator("#file-list li").count() == 3
    page.select_option("#all-format", "png")
    page.fill("#all-quality", "60")
    page.focus("#start")
    page.keyboard.press("Enter")
    job = finished_job(page, mesh)
    assert [f["mimeType"] for f in job["results"]["files"]] == ["image/png"] * 3
    assert page.locator("li[data-result][data-status=completed]").count() == 3
    with Image.open(io.BytesIO(fetch_output(job, 1))) as image:
        assert (image.format, image.size) == ("PNG", (1800, 1200))  # turned upright
    check_download(page, job, tmp_path, "hopper.webp", "PNG")
    # Nothing wider than the phone's screen, and the controls are labelled.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
            .filter((node) => !node.labels.length && !node.getAttribute('aria-label'))
            .map((node) => node.id)"""
    )
    assert unlabelled == []
    page.screenshot(path=str(tmp_path / "page-390.png"), full_page=True)
    assert (tmp_path / "page-390.png").stat().st_size > 10_000
    assert not problems, problems
