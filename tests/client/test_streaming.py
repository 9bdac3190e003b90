"""A 200 MB upload and a 200 MB download keep the client's memory flat: the file goes out of
and into the disk in chunks. Measured in a process of its own against a small transfer made
the same way in the same test (the baseline), on a loopback server that checks every byte."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.client.loopback import Answer, Loopback, Seen

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
BIG = 200 * MiB
SMALL = 2 * MiB
# Growth allowed beyond the small transfer's: a few chunks in flight, never the file.
FLAT_BYTES = 32 * MiB


def pattern(count: int) -> Iterator[bytes]:
    for number in range(count // MiB):
        yield hashlib.sha256(number.to_bytes(8, "big")).digest() * (MiB // 32)


def write_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for chunk in pattern(size):
            out.write(chunk[::-1])


def sent_file_matches(seen: Seen, path: Path) -> bool:
    """The multipart body the server read is exactly the form head, the file, and the tail."""
    boundary = re.search(r"boundary=(\S+)", seen.headers["Content-Type"])
    assert boundary is not None
    start = seen.body_head.index(b'filename="' + path.name.encode() + b'"')
    head = seen.body_head[: seen.body_head.index(b"\r\n\r\n", start) + 4]
    expected = hashlib.sha256(head)
    with path.open("rb") as source:
        while chunk := source.read(MiB):
            expected.update(chunk)
    expected.update(f"\r\n--{boundary.group(1)}--\r\n".encode())
    return expected.hexdigest() == seen.body_sha256


def transfer(tmp_path: Path, size: int) -> int:
    """Memory growth of the probe process for one upload and one download of `size` bytes."""
    source, output = tmp_path / f"upload-{size}.bin", tmp_path / f"download-{size}.tar"
    write_file(source, size)
    answers = [
        Answer.json(200, {"jobs": [], "pagination": {"total": 0}}),
        Answer.json(200, {"jobId": "big", "status": "pending"}),
        Answer(200, lambda: pattern(size), {"Content-Length": str(size)}),
    ]
    with Loopback(answers) as server:
        done = subprocess.run(
            [sys.executable, "-m", "tests.client.rss_probe", server.url, str(source), str(output)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    upload = next(s for s in server.seen if s.method == "POST")
    assert upload.body_bytes > size
    assert sent_file_matches(upload, source)
    received = hashlib.sha256()
    with output.open("rb") as downloaded:
        while chunk := downloaded.read(MiB):
            received.update(chunk)
    expected = hashlib.sha256()
    for chunk in pattern(size):
        expected.update(chunk)
    assert received.digest() == expected.digest()
    source.unlink()
    output.unlink()
    measured = json.loads(done.stdout)
    growth: int = measured["peak"] - measured["before"]
    return growth


def test_200_mb_upload_and_download_keep_client_memory_flat(tmp_path: Path) -> None:
    baseline = transfer(tmp_path, SMALL)
    big = transfer(tmp_path, BIG)
    print(f"client memory growth: {big / MiB:.1f} MiB for 200 MB, {baseline / MiB:.1f} for 2 MB")
    assert big - baseline < FLAT_BYTES, (big, baseline)
