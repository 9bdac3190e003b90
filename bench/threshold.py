"""Where the sync fast path stops paying: CPU per sync `/api/convert` request on the fast path
(`JobService.Convert`, nothing stored) and on the job path, by source size, side by side in one
mesh; writes `bench/threshold.md`.

    .venv/bin/python -m bench.threshold [--rounds 4] [--requests 25] [--output FILE]

One mesh as `make run` starts it (`launcher`). The sources are the bench photo scaled to several
sizes (JPEG Q 90), each converted to a 500 px JPEG thumbnail. A request goes the job way when it
carries an `Idempotency-Key` (API.md: its retry must find the job), the same request otherwise.
Requests are sent one at a time, in blocks that alternate path and size, and every block's CPU
is read from every process of the mesh (psutil, sandboxes included) before and after it, so the
two paths are compared under the same load. The fast path takes a source only while it fits in
one NATS message (`max_payload`, 1 MiB by default, less the headroom for headers), which is why
`SYNC_INLINE_MAX_BYTES` defaults to 768 KiB; the largest source here is just under it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time
from pathlib import Path

import pyvips

from bench.e2e import OUT, PHOTO, ROOT, Role, mesh_roles, multipart, role_cpu, servers
from launcher.mesh import LocalMesh

# Source sizes to aim at (KiB): the largest just under SYNC_INLINE_MAX_BYTES' 768 KiB.
TARGETS = (64, 192, 384, 576, 740)
FORM = {"format": "jpg", "resize": "width", "resizeWidth": "500"}
PATHS = ("fast", "job")


def sources(work: Path) -> dict[int, Path]:
    """The photo scaled to the width whose JPEG (Q 90) is nearest each target size, at most the
    target: size in bytes -> file."""
    found = {}
    for target in TARGETS:
        low, high, best = 100, 4000, b""
        while high - low > 8:
            width = (low + high) // 2
            image = pyvips.Image.thumbnail(str(PHOTO), width, size="force", height=width * 2 // 3)
            data: bytes = image.jpegsave_buffer(Q=90)
            if len(data) <= target * 1024:
                low, best = width, data
            else:
                high = width
        path = work / f"photo-{target}k.jpg"
        path.write_bytes(best)
        found[len(best)] = path
    return dict(sorted(found.items()))


def block(
    mesh: LocalMesh, key: str, form: tuple[bytes, str], *, path: str, count: int
) -> tuple[float, list[float]]:
    """CPU seconds of the whole mesh per request, and each request's latency in ms."""
    body, content_type = form
    roles: list[Role] = mesh_roles(mesh)
    host, port = mesh.http_url.removeprefix("http://").split(":")
    before = sum(role_cpu(roles).values())
    latencies = []
    for _ in range(count):
        headers = {
            "Content-Type": content_type,
            "Authorization": f"Bearer {key}",
            "Accept": "application/octet-stream",
        }
        if path == "job":
            headers["Idempotency-Key"] = os.urandom(8).hex()
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        began = time.perf_counter()
        connection.request("POST", "/api/convert", body, headers)
        response = connection.getresponse()
        data = response.read()
        latencies.append((time.perf_counter() - began) * 1000)
        connection.close()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {data[:300]!r}")
    return (sum(role_cpu(roles).values()) - before) / count, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--output", type=Path, default=ROOT / "threshold.md")
    args = parser.parse_args()
    work = OUT / "threshold"
    work.mkdir(parents=True, exist_ok=True)
    photos = sources(work)
    load = os.getloadavg()
    cpu: dict[tuple[int, str], list[float]] = {(s, p): [] for s in photos for p in PATHS}
    latency: dict[tuple[int, str], list[float]] = {(s, p): [] for s in photos for p in PATHS}
    with servers(work, {"mesh": {}}, baselines=False) as bench:
        mesh = bench.mesh_of("mesh-sync")
        bodies = {size: multipart(FORM, photo) for size, photo in photos.items()}
        for form in bodies.values():  # warm-up, and the worker is up
            for path in PATHS:
                block(mesh, bench.key, form, path=path, count=3)
        for number in range(args.rounds):
            for size, form in bodies.items():
                order = PATHS if number % 2 == 0 else PATHS[::-1]
                for path in order:
                    spent, took = block(mesh, bench.key, form, path=path, count=args.requests)
                    cpu[(size, path)].append(spent)
                    latency[(size, path)].extend(took)
                    print(
                        f"round {number + 1} {size // 1024:4} KiB {path:4} "
                        f"cpu/req {spent * 1000:6.1f} ms p50 {statistics.median(took):6.1f} ms",
                        flush=True,
                    )
    lines = [
        "# The sync fast path by source size",
        "",
        "Written by `bench/threshold.py` from one run; rerun to refresh.",
        "",
        f"- one mesh (`launcher`, defaults), one request at a time, {args.rounds} rounds of "
        f"{args.requests} requests per size and path, alternating; load average "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} before the run (the machine is shared)",
        "- each source: the bench photo scaled to the width that gives about that size, JPEG "
        "Q 90; each request: a 500 px JPEG thumbnail, `Accept: application/octet-stream`; "
        "`job` = the same request with an "
        "`Idempotency-Key`, which sends it the job way",
        "- CPU: every process of the mesh, sandboxes included, per request (median of the "
        "rounds); latency: p50 over every request",
        "",
        "| source | fast: CPU ms/req | job: CPU ms/req | fast / job | fast: p50 ms | job: p50 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for size in photos:
        fast = statistics.median(cpu[(size, "fast")]) * 1000
        job = statistics.median(cpu[(size, "job")]) * 1000
        lines.append(
            f"| {size / 1024:.0f} KiB | {fast:.1f} | {job:.1f} | {fast / job:.2f}x | "
            f"{statistics.median(latency[(size, 'fast')]):.1f} | "
            f"{statistics.median(latency[(size, 'job')]):.1f} |"
        )
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
