"""Profiles every Python process of the mesh under load: py-spy records the gateway, the
orchestrator and the image worker (with its sandbox processes) while wrk drives one flow, then
prints where the samples went, per process: the top functions by own time and by time inside.

    .venv/bin/python -m bench.profile [--flow sync|async] [--workload thumbnail|webp]
        [--seconds 20] [--mesh-env NAME=VALUE ...]

Raw stacks (py-spy's collapsed format, for any flame-graph tool) and the summary go to
`bench/out/profiles/`. Sampling costs CPU, so nothing here is a timing; `bench.e2e` measures.
"""

from __future__ import annotations

import argparse
import collections
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.e2e import OUT, PHOTO, TENANT, WORKLOADS, Endpoint, multipart, wrk
from launcher.mesh import LocalMesh, MeshConfig

PROFILES = OUT / "profiles"


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    if not found.exists():
        sys.exit("py-spy is missing: pip install py-spy (it is pinned in requirements.lock)")
    return str(found)


def record(pid: int, output: Path, seconds: float, *, native: bool) -> subprocess.Popen[bytes]:
    command = [py_spy(), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200"]
    command += ["-f", "raw", "-o", str(output), "--subprocesses"]
    command += ["--native"] if native else ["--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# A sample whose stack passes through one of these is a thread waiting, not working (py-spy's
# own idle filter misses threads blocked in native code, and --native samples them all).
WAITS = (
    "EpollSelector.select",
    "_ConnectionBase.recv",
    "Condition.wait",
    "Event.wait",
    "Thread.join",
    "epoll_wait",
    "g_cond_wait",
    "g_cond_wait_until",
    "g_async_queue_timeout_pop",
    "vips_semaphore_down",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "__futex_abstimed_wait_common",
    "sem_wait",
    "nanosleep",
    "clock_nanosleep",
    "poll",
)


def summarise(path: Path, top: int = 16) -> str:
    """Own and inclusive samples per function, from py-spy's collapsed stacks, waits apart."""
    own: collections.Counter[str] = collections.Counter()
    inside: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [_short(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += samples
        if any(frame.split(" (")[0] in WAITS for frame in frames):
            waiting += samples
            continue
        own[frames[-1]] += samples
        for frame in set(frames[1:]):  # the first frame is the thread
            inside[frame] += samples
    busy = max(total - waiting, 1)
    lines = [f"{path.stem}: {total} samples, {waiting / max(total, 1) * 100:.0f}% waiting"]
    for title, counter in (("own time", own), ("time inside", inside)):
        lines.append(f"  top by {title} (% of working samples):")
        for frame, samples in counter.most_common(top):
            lines.append(f"    {samples / busy * 100:5.1f}%  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` as `function (module.py)`."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({file.rsplit('/', 2)[-1] if file else '?'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flow", choices=["sync", "async"], default="sync")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="thumbnail")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--mesh-env", action="append", default=[])
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.mesh_env)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench-deps` installs it")
    PROFILES.mkdir(parents=True, exist_ok=True)
    work = OUT / "profile-mesh"
    shutil.rmtree(work, ignore_errors=True)
    key = secrets.token_urlsafe(24)
    mesh = LocalMesh(MeshConfig.ephemeral(work, f"{TENANT}:{key}", **env))
    body_path = work / "body.form"
    try:
        mesh.start()
        body, content_type = multipart(WORKLOADS[args.workload]["form"], PHOTO)
        body_path.write_bytes(body)
        auth = f"Bearer {key}"
        if args.flow == "sync":
            endpoint = Endpoint(
                mesh.http_url + "/api/convert",
                "request.lua",
                [
                    "POST",
                    str(body_path),
                    f"Authorization: {auth}",
                    f"Content-Type: {content_type}",
                    "Accept: application/octet-stream",
                ],
            )
        else:
            endpoint = Endpoint(
                mesh.http_url + "/", "job.lua", [str(body_path), auth, content_type]
            )
        wrk(endpoint, args.connections, 3)  # warm-up
        label = f"{args.flow}-{args.workload}"
        recorders = {
            name: record(
                mesh.processes[name].pid,
                PROFILES / f"{label}-{name}.txt",
                args.seconds,
                native=name == "image",
            )
            for name in ("gateway", "orchestrator", "image")
        }
        time.sleep(0.5)  # let py-spy attach before the load starts
        report, _ = wrk(endpoint, args.connections, args.seconds)
        for name, recorder in recorders.items():
            _, problems = recorder.communicate()
            if recorder.returncode:
                print(f"py-spy on {name} failed: {problems.decode()[-500:]}")
        done = report["jobs"] if args.flow == "async" else report["requests"]
        print(f"{label}: {done} completed in {args.seconds:g} s under py-spy\n")
        summary = [
            summarise(PROFILES / f"{label}-{name}.txt")
            for name in recorders
            if (PROFILES / f"{label}-{name}.txt").exists()
        ]
        text = "\n\n".join(summary)
        (PROFILES / f"{label}-summary.txt").write_text(text + "\n")
        print(text)
    finally:
        mesh.stop()


if __name__ == "__main__":
    main()
