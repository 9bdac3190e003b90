"""End to end, same run, same photo, same load generator: thumbor 7.8, the mesh's `/api/convert`,
the mesh's async jobs (create -> wait on the events stream -> download) and pyvips direct (one
process per core), in interleaved rounds; writes `bench/results.md`.

    .venv/bin/python -m bench.e2e [--rounds 3] [--seconds 10] [--connections 4]
        [--mesh-env NAME=VALUE ...] [--only thumbnail] [--skip-ratios] [--output FILE]

The mesh is started the way `make run` starts it (`launcher`), thumbor is installed into its
own virtualenv under `bench/out/thumbor` on first use, and `wrk` (Debian) drives all four with
the same number of connections. For each run the CPU seconds of every process tree are read
with psutil before and after (reaped children included), so CPU per request does not depend on
what the other tenants of the machine are doing; the NATS server's monitoring endpoint gives
the messages and JetStream operations per job; a sampler records peak RSS per process.
After the mesh is stopped, `bench.media` and `bench.archive` run and their tables are copied in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyvips

from launcher.mesh import LocalMesh, MeshConfig
from launcher.nats import free_port, nats_server_binary
from tests.corpus import CORPUS

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
WRK_DIR = ROOT / "wrk"
PHOTO = CORPUS / "exif-orientation-examples" / "Landscape_1.jpg"
THUMBOR_VERSION = "7.8.0"
THUMBNAIL = 500
QUALITY = 82
TENANT = "bench"
CORES = os.cpu_count() or 1

# The two workloads: the form the mesh gets, thumbor's URL, the direct server's path.
WORKLOADS: dict[str, dict[str, Any]] = {
    "thumbnail": {
        "label": "500 px JPEG thumbnail",
        "form": {"format": "jpg", "resize": "width", "resizeWidth": str(THUMBNAIL)},
        "thumbor": f"/unsafe/{THUMBNAIL}x0/{PHOTO.name}",
        "direct": "/thumbnail",
        "width": THUMBNAIL,
        "format": "jpeg",
    },
    "webp": {
        "label": "full size -> WebP",
        "form": {"format": "webp"},
        "thumbor": f"/unsafe/filters:format(webp)/{PHOTO.name}",
        "direct": "/webp",
        "width": 1800,
        "format": "webp",
    },
}


def multipart(fields: dict[str, str], photo: Path) -> tuple[bytes, str]:
    boundary = f"bench{uuid.uuid4().hex}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in {**fields, "compression": str(QUALITY)}.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{photo.name}"'
        "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + photo.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- processes and what they cost -------------------------------------------------------------


def _seconds(times: Any, children: bool) -> float:
    own = float(times.user + times.system)
    return own + (float(times.children_user + times.children_system) if children else 0.0)


@dataclass
class Role:
    """A process (and, with `descendants`, everything under it) whose CPU is counted as one."""

    name: str
    pid: int
    part: str = "all"  # "all", "self" (the process alone) or "descendants" (all but itself)

    def cpu(self) -> float:
        try:
            root = psutil.Process(self.pid)
            times = root.cpu_times()
            total = 0.0 if self.part == "descendants" else _seconds(times, False)
            if self.part == "self":
                return total
            total += float(times.children_user + times.children_system)
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    total += _seconds(child.cpu_times(), True)
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            below = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        if self.part == "self":
            return [root]
        return below if self.part == "descendants" else [root, *below]


class RssSampler:
    """Peak RSS per role: of its largest single process and of all its processes together."""

    def __init__(self, roles: list[Role], interval: float = 0.25) -> None:
        self._roles = roles
        self._interval = interval
        self.single: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for role in self._roles:
                sizes = []
                for process in role.processes():
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                        sizes.append(process.memory_info().rss)
                if sizes:
                    self.single[role.name] = max(self.single.get(role.name, 0), *sizes)
                    self.total[role.name] = max(self.total.get(role.name, 0), sum(sizes))


def high_water_mark(pid: int) -> int:
    """The kernel's peak RSS of one process (VmHWM), in bytes; 0 if it is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# --- the servers ------------------------------------------------------------------------------


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in time")


def thumbor_binary() -> Path:
    """thumbor 7.8 in its own virtualenv (its pins, e.g. Pillow < 13, are not the mesh's)."""
    venv = OUT / "thumbor"
    binary = venv / "bin" / "thumbor"
    if binary.exists():
        found = subprocess.run(
            [str(binary), "--version"], check=False, capture_output=True, text=True
        )
        if THUMBOR_VERSION in found.stdout + found.stderr:
            return binary
    print(f"installing thumbor {THUMBOR_VERSION} into {venv}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"thumbor=={THUMBOR_VERSION}"],
        check=True,
    )
    return binary


def start_thumbor(work: Path, port: int) -> subprocess.Popen[bytes]:
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    shutil.copy(PHOTO, images / PHOTO.name)
    conf = work / "thumbor.conf"
    conf.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = '{images}'\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = None\n"
        f"QUALITY = {QUALITY}\n"
        "ALLOW_UNSAFE_URL = True\n"
    )
    log = (work / "thumbor.log").open("ab")
    return subprocess.Popen(
        [
            str(thumbor_binary()),
            "--port",
            str(port),
            "--ip",
            "127.0.0.1",
            "--conf",
            str(conf),
            "--processes",
            str(CORES),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_direct(work: Path, port: int) -> subprocess.Popen[bytes]:
    log = (work / "direct.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.direct", "--port", str(port), "--workers", str(CORES)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


# --- driving them -----------------------------------------------------------------------------


@dataclass
class Endpoint:
    url: str
    script: str  # request.lua or job.lua
    args: list[str]


@dataclass
class Run:
    target: str
    workload: str
    connections: int
    seconds: float
    completed: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]
    nats: dict[str, float]
    other_cpu: float
    wrk_cpu: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds


@dataclass
class Bench:
    meshes: dict[str, LocalMesh]
    key: str
    thumbor_url: str
    direct_url: str
    work: Path
    roles: dict[str, list[Role]] = field(default_factory=dict)
    bodies: dict[str, tuple[Path, str]] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        flows = [f"{label}-{flow}" for label in self.meshes for flow in ("sync", "async")]
        return ["thumbor", *flows, "direct"]

    def mesh_of(self, target: str) -> LocalMesh:
        return self.meshes[target.rsplit("-", 1)[0]]

    def endpoint(self, target: str, workload: str) -> Endpoint:
        spec = WORKLOADS[workload]
        auth = f"Bearer {self.key}"
        body, content_type = self.bodies[workload]
        if target == "thumbor":
            return Endpoint(self.thumbor_url + spec["thumbor"], "request.lua", ["GET", "-"])
        if target == "direct":
            return Endpoint(
                self.direct_url + spec["direct"],
                "request.lua",
                ["POST", str(PHOTO), "Content-Type: image/jpeg"],
            )
        mesh = self.mesh_of(target)
        if target.endswith("-sync"):
            headers = [f"Authorization: {auth}", f"Content-Type: {content_type}"]
            headers.append("Accept: application/octet-stream")
            return Endpoint(
                mesh.http_url + "/api/convert", "request.lua", ["POST", str(body), *headers]
            )
        return Endpoint(mesh.http_url + "/", "job.lua", [str(body), auth, content_type])

    def nats_counters(self, target: str) -> dict[str, float]:
        if target in ("thumbor", "direct"):
            return {}
        mesh = self.mesh_of(target)
        assert mesh.nats is not None
        base = f"http://127.0.0.1:{mesh.nats.monitor_port}"
        with urllib.request.urlopen(f"{base}/varz", timeout=5) as response:
            varz = json.load(response)
        with urllib.request.urlopen(f"{base}/jsz?streams=true", timeout=5) as response:
            jsz = json.load(response)
        counters: dict[str, float] = {
            "NATS messages in": varz["in_msgs"],
            "NATS messages out": varz["out_msgs"],
            "JetStream API calls": jsz.get("api", {}).get("total", 0),
        }
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                counters[f"stored in {stream['name']}"] = stream["state"]["last_seq"]
        return counters

    def check_alive(self, target: str) -> None:
        """A mesh service that exited fails the run here, by name: its measured pid is gone,
        and its requests would wait out their deadlines instead."""
        if target in ("thumbor", "direct"):
            return
        mesh = self.mesh_of(target)
        if exited := mesh.exited():
            codes = ", ".join(f"{name} (code {code})" for name, code in exited.items())
            raise RuntimeError(f"{target}: {codes} exited; logs in {mesh.config.log_dir}")

    def run(self, target: str, workload: str, connections: int, seconds: float) -> Run:
        self.check_alive(target)
        endpoint = self.endpoint(target, workload)
        roles = self.roles[target]
        machine_before = psutil.cpu_times()
        cpu_before = role_cpu(roles)
        nats_before = self.nats_counters(target)
        report, wrk_cpu = wrk(endpoint, connections, seconds)
        cpu = {name: seconds - cpu_before[name] for name, seconds in role_cpu(roles).items()}
        machine_after = psutil.cpu_times()
        nats_after = self.nats_counters(target)
        self.check_alive(target)
        busy = sum(
            getattr(machine_after, f) - getattr(machine_before, f)
            for f in ("user", "system", "nice", "irq", "softirq")
        )
        ours = sum(cpu.values()) + wrk_cpu
        errors = sum(report["errors"].values())
        if target.endswith("-async"):
            completed = report["jobs"]
            errors += report["job_failures"]
            samples = sorted(report["job_seconds"]) or [0.0]
            p50 = statistics.median(samples) * 1000
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        else:
            completed = report["requests"] - report["errors"]["status"]
            p50 = report["latency_us"]["p50"] / 1000
            p99 = report["latency_us"]["p99"] / 1000
        return Run(
            target=target,
            workload=workload,
            connections=connections,
            seconds=report["duration_us"] / 1e6,
            completed=completed,
            errors=errors,
            p50_ms=p50,
            p99_ms=p99,
            cpu=cpu,
            nats={k: nats_after[k] - nats_before.get(k, 0) for k in nats_after},
            other_cpu=max(0.0, busy - ours),
            wrk_cpu=wrk_cpu,
        )


def role_cpu(roles: list[Role]) -> dict[str, float]:
    """CPU seconds so far by role name (roles that share a name add up)."""
    totals: dict[str, float] = {}
    for role in roles:
        totals[role.name] = totals.get(role.name, 0.0) + role.cpu()
    return totals


def wrk(endpoint: Endpoint, connections: int, seconds: float) -> tuple[dict[str, Any], float]:
    """Runs wrk; its JSON line, and the CPU seconds wrk itself used."""
    command = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "60s",
        "-s",
        str(WRK_DIR / endpoint.script),
        endpoint.url,
        "--",
        *endpoint.args,
    ]
    env = {**os.environ, "BENCH_WRK_DIR": str(WRK_DIR)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    output, problems = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    for line in output.decode().splitlines():
        if line.startswith("WRK "):
            return json.loads(line[4:]), usage.ru_utime + usage.ru_stime
    raise RuntimeError(f"wrk gave no report ({process.returncode}): {problems.decode()[-2000:]}")


# --- checking that every side does the work ---------------------------------------------------


def fetch(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(request, timeout=120) as response:
        data: bytes = response.read()
        return data


def check_output(target: str, workload: str, data: bytes) -> None:
    spec = WORKLOADS[workload]
    image = pyvips.Image.new_from_buffer(data, "")
    loader = image.get("vips-loader")
    if image.width != spec["width"] or not loader.startswith(spec["format"]):
        raise RuntimeError(f"{target} {workload}: got {image.width} px from {loader}")


def probe(bench: Bench, target: str, workload: str) -> None:
    """One request by hand, its output decoded: a target that does not do the work fails here."""
    spec = WORKLOADS[workload]
    auth = {"Authorization": f"Bearer {bench.key}"}
    body, content_type = bench.bodies[workload]
    if target == "thumbor":
        data = fetch(bench.thumbor_url + spec["thumbor"])
    elif target == "direct":
        data = fetch(bench.direct_url + spec["direct"], PHOTO.read_bytes())
    elif target.endswith("-sync"):
        headers = {**auth, "Content-Type": content_type, "Accept": "application/octet-stream"}
        data = fetch(bench.mesh_of(target).http_url + "/api/convert", body.read_bytes(), headers)
    else:
        url = bench.mesh_of(target).http_url
        headers = {**auth, "Content-Type": content_type}
        job = json.loads(fetch(url + "/api/jobs", body.read_bytes(), headers))["jobId"]
        events = fetch(f"{url}/api/jobs/{job}/events", None, auth)
        if b'"status": "completed"}' not in events:
            raise RuntimeError(f"{target} {workload}: {events[-500:]!r}")
        data = fetch(f"{url}/api/jobs/{job}/files/0", None, auth)
    check_output(target, workload, data)


# --- the whole run ----------------------------------------------------------------------------


def mesh_roles(mesh: LocalMesh) -> list[Role]:
    procs = mesh.processes
    assert mesh.nats is not None
    idle = "media + archive workers (idle)"
    return [
        Role("gateway", procs["gateway"].pid),
        Role("orchestrator", procs["orchestrator"].pid),
        Role("image worker", procs["image"].pid, "self"),
        Role("image sandboxes", procs["image"].pid, "descendants"),
        Role("nats-server", mesh.nats.process.pid),
        Role(idle, procs["media"].pid),
        Role(idle, procs["archive"].pid),
    ]


@contextlib.contextmanager
def servers(
    work: Path,
    variants: dict[str, dict[str, str]],
    baselines: bool = True,
    checkouts: dict[str, Path] | None = None,
) -> Iterator[Bench]:
    """The meshes of `variants`, and (with `baselines`) thumbor and pyvips direct. A mesh
    named in `checkouts` runs that checkout's code (its services start in that directory, so
    `python -m services.x` imports from there first): code against code in one run."""
    key = secrets.token_urlsafe(24)
    meshes = {}
    for label, env in variants.items():
        shutil.rmtree(work / label, ignore_errors=True)
        config = MeshConfig.ephemeral(work / label, f"{TENANT}:{key}", **env)
        if checkouts and label in checkouts:
            config.command_prefix = ["env", f"--chdir={checkouts[label]}"]
        meshes[label] = LocalMesh(config)
    thumbor_port, direct_port = free_port(), free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        if baselines:
            started.append(start_thumbor(work, thumbor_port))
            started.append(start_direct(work, direct_port))
        for mesh in meshes.values():
            mesh.start()
        bench = Bench(
            meshes, key, f"http://127.0.0.1:{thumbor_port}", f"http://127.0.0.1:{direct_port}", work
        )
        if baselines:
            wait_http(bench.thumbor_url + "/healthcheck")
            wait_http(bench.direct_url + "/")
            bench.roles = {
                "thumbor": [Role("thumbor", started[0].pid)],
                "direct": [Role("pyvips direct", started[1].pid)],
            }
        for label, mesh in meshes.items():
            bench.roles[f"{label}-sync"] = bench.roles[f"{label}-async"] = mesh_roles(mesh)
        for workload, spec in WORKLOADS.items():
            path = work / f"{workload}.form"
            data, content_type = multipart(spec["form"], PHOTO)
            path.write_bytes(data)
            bench.bodies[workload] = (path, content_type)
        yield bench
    finally:
        for mesh in meshes.values():
            mesh.stop()
        for process in started:
            stop(process)


def conditions(args: argparse.Namespace, load_before: tuple[float, ...]) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), model)
    nats_version = subprocess.run(
        [nats_server_binary(), "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    thumbor_pillow = subprocess.run(
        [str(OUT / "thumbor" / "bin" / "python"), "-c", "import PIL; print(PIL.__version__)"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return [
        f"- machine: {CORES} cores ({model}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Linux {platform.release()}; shared with other sessions: load average "
        f"{', '.join(f'{x:.2f}' for x in load_before)} before the run",
        f"- Python {platform.python_version()}, libvips {pyvips.version(0)}.{pyvips.version(1)}."
        f"{pyvips.version(2)} (pyvips-binary), {nats_version}, "
        f"{(wrk_version.stdout + wrk_version.stderr).split()[1]} wrk",
        f"- thumbor {THUMBOR_VERSION} (PIL engine, Pillow {thumbor_pillow}), "
        f"`--processes {CORES}`, file loader, no storage or result storage, QUALITY {QUALITY}",
        f"- pyvips direct: `bench/direct.py`, {CORES} uvicorn worker processes, the request body "
        "converted in the request (no sandbox, no storage)",
        "- mesh: `launcher` as `make run` starts it (each labelled mesh its own nats-server and "
        "services), defaults except: "
        + "; ".join(
            f"`{label}`: {', '.join(f'{k}={v}' for k, v in env.items()) or 'none'}"
            for label, env in args.meshes.items()
        )
        + "".join(
            f"; `{label}` runs the code checked out at commit {_commit(path)}"
            for label, path in args.checkouts.items()
        ),
        f"- load: wrk, {args.connections} connections ({args.connections} threads), "
        f"{args.seconds:g} s per run, {args.rounds} interleaved rounds (the order rotates each "
        "round), after a warm-up run of each",
        f"- photo: `{PHOTO.relative_to(CORPUS.parent)}` (1800x1200, "
        f"{PHOTO.stat().st_size // 1024} KiB); thumbor reads it from its file loader, the "
        "others get it as the request body (mesh: multipart, `compression=82`; sync with "
        "`Accept: application/octet-stream`)",
    ]


def fmt_ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def summarise(runs: list[Run], target: str, workload: str) -> dict[str, float]:
    mine = [r for r in runs if r.target == target and r.workload == workload]
    rates = [r.rate for r in mine]
    cpu = {}
    completed = sum(r.completed for r in mine)
    for role in mine[0].cpu:
        cpu[role] = sum(r.cpu[role] for r in mine) / max(completed, 1) * 1000
    nats = {}
    for key in mine[0].nats:
        nats[key] = sum(r.nats.get(key, 0) for r in mine) / max(completed, 1)
    return {
        "rate": statistics.median(rates),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "p50": statistics.median(r.p50_ms for r in mine),
        "p99": statistics.median(r.p99_ms for r in mine),
        "errors": sum(r.errors for r in mine),
        "completed": completed,
        "cpu_total": sum(cpu.values()),
        "other": sum(r.other_cpu for r in mine) / sum(r.seconds for r in mine),
        "wrk": sum(r.wrk_cpu for r in mine) / max(completed, 1) * 1000,
        **{f"cpu:{k}": v for k, v in cpu.items()},
        **{f"nats:{k}": v for k, v in nats.items()},
    }


def write_results(
    path: Path,
    lines: list[str],
    *,
    runs: list[Run],
    idle: list[Run],
    rss: dict[str, tuple[int, int, int]],
    extra: dict[str, str],
) -> None:
    out = [
        "# End-to-end benchmark",
        "",
        "Written by `make bench` (`bench/e2e.py`) from one full run;"
        " rerun to refresh. Ratios are to thumbor in the same run.",
        "",
        "## Conditions",
        "",
        *lines,
        "",
    ]
    workloads = sorted({r.workload for r in runs}, key=list(WORKLOADS).index)
    targets = list(dict.fromkeys(r.target for r in runs))
    flows = [t for t in targets if t not in ("thumbor", "direct")]
    stats = {(t, w): summarise(runs, t, w) for w in workloads for t in targets}
    out += [
        "## Throughput and latency under load",
        "",
        "p50/p99: per request; for the async "
        "flow, per job (create to the end of the download). CPU: every process of that "
        "side (for the mesh: gateway, orchestrator, image worker and its sandboxes, "
        "nats-server, and the idle media and archive workers).",
        "",
    ]
    for w in workloads:
        out += [f"### {WORKLOADS[w]['label']}", ""]
        out += [
            "| | req/s (median; min-max) | vs thumbor | p50 ms | p99 ms | CPU ms/req | errors |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        base = stats[("thumbor", w)]
        for t in targets:
            st = stats[(t, w)]
            out.append(
                f"| {t} | {st['rate']:.1f} ({st['rate_min']:.1f}-{st['rate_max']:.1f}) | "
                f"{fmt_ratio(st['rate'], base['rate'])} | {st['p50']:.0f} | {st['p99']:.0f} | "
                f"{st['cpu_total']:.1f} | {st['errors']:.0f} |"
            )
        other = statistics.mean(stats[(t, w)]["other"] for t in targets)
        out += [
            "",
            f"Other tenants of the machine used {other:.2f} cores on average meanwhile "
            "(machine busy time minus the measured processes and wrk).",
            "",
        ]
    if idle:
        idle_workloads = sorted({r.workload for r in idle}, key=list(WORKLOADS).index)
        out += [
            "## Latency of one request at a time (1 connection)",
            "",
            "| | "
            + " | ".join(f"{WORKLOADS[w]['label']}: p50 / p99 ms" for w in idle_workloads)
            + " |",
            "| --- |" + " --- |" * len(idle_workloads),
        ]
        for t in targets:
            cells = []
            for w in idle_workloads:
                st = summarise(idle, t, w)
                cells.append(f"{st['p50']:.1f} / {st['p99']:.1f}")
            out.append(f"| {t} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## CPU per request, by process (ms of CPU per completed request)", ""]
    for w in workloads:
        names = [k[4:] for k in stats[(flows[0], w)] if k.startswith("cpu:")]
        out += [
            f"### {WORKLOADS[w]['label']}",
            "",
            "| process | " + " | ".join(flows) + " |",
            "| --- |" + " --- |" * len(flows),
        ]
        for name in names:
            out.append(
                f"| {name} | "
                + " | ".join(f"{stats[(t, w)]['cpu:' + name]:.1f}" for t in flows)
                + " |"
            )
        out.append(
            "| **mesh total** | "
            + " | ".join(f"**{stats[(t, w)]['cpu_total']:.1f}**" for t in flows)
            + " |"
        )
        direct = stats[("direct", w)]["cpu_total"]
        out.append(
            "| total / pyvips direct | "
            + " | ".join(fmt_ratio(stats[(t, w)]["cpu_total"], direct) for t in flows)
            + " |"
        )
        out += [
            "",
            f"thumbor: {stats[('thumbor', w)]['cpu_total']:.1f} ms, pyvips direct: "
            f"{direct:.1f} ms (all their processes). wrk itself: "
            f"{stats[(flows[0], w)]['wrk']:.1f} ms per request ({flows[0]}).",
            "",
        ]
    out += [
        "## NATS and JetStream operations per job",
        "",
        "Deltas of nats-server's `/varz` and `/jsz` counters over the runs, divided by the "
        "jobs completed (jobs cut off at the end of a run make these a little high). "
        '"stored in X" counts messages written to stream X (KV revisions for `KV_jobs`, '
        "chunks and metadata for `OBJ_blobs`).",
        "",
    ]
    for w in workloads:
        keys = [k for k in stats[(flows[0], w)] if k.startswith("nats:")]
        out += [
            f"### {WORKLOADS[w]['label']}",
            "",
            "| counter | " + " | ".join(flows) + " |",
            "| --- |" + " --- |" * len(flows),
        ]
        for key in keys:
            out.append(
                f"| {key[5:]} | "
                + " | ".join(f"{stats[(t, w)].get(key, 0):.1f}" for t in flows)
                + " |"
            )
        out.append("")
    out += [
        "## Peak RSS",
        "",
        "Per process: the larger of VmHWM at the end of the run and the "
        "largest RSS a sampler saw (every 0.25 s); per group of processes (thumbor's, the "
        "sandboxes of one worker), also the largest sum seen at once.",
        "",
        "| process | peak RSS MiB (one process) | peak sum MiB |",
        "| --- | --- | --- |",
    ]
    for name, (hwm, single, total) in rss.items():
        out.append(f"| {name} | {max(hwm, single) / 2**20:.0f} | {total / 2**20:.0f} |")
    out.append("")
    for title, text in extra.items():
        out += [f"## {title}", "", "```", text.rstrip(), "```", ""]
    path.write_text("\n".join(out))


def sub_bench(module: str, *args: str) -> str:
    print(f"running {module}", flush=True)
    found = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
    )
    return found.stdout + (
        f"\n(exit {found.returncode})\n{found.stderr[-2000:]}" if found.returncode else ""
    )


def _commit(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h"],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.strip()


def parse_mesh(spec: str) -> tuple[str, dict[str, str]]:
    label, _, settings = spec.partition(":")
    return label.partition("@")[0], dict(item.split("=", 1) for item in settings.split(",") if item)


def parse_checkout(spec: str) -> tuple[str, Path] | None:
    """`LABEL@PATH[:...]`: the mesh LABEL runs the code checked out at PATH."""
    label, at, path = spec.partition(":")[0].partition("@")
    return (label, Path(path).resolve()) if at else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", choices=list(WORKLOADS), action="append")
    parser.add_argument(
        "--mesh",
        action="append",
        metavar="LABEL[@CHECKOUT][:NAME=VALUE,...]",
        help="a mesh to drive, with settings (and the code of another checkout, with its "
        "stubs generated); repeat to compare variants in the same run",
    )
    parser.add_argument("--skip-ratios", action="store_true", help="no media/archive benches")
    parser.add_argument("--output", type=Path, default=ROOT / "results.md")
    args = parser.parse_args()
    args.meshes = dict(parse_mesh(spec) for spec in args.mesh or ["mesh"])
    args.checkouts = dict(found for spec in args.mesh or [] if (found := parse_checkout(spec)))
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench-deps` installs it (Debian package wrk)")
    thumbor_binary()
    work = OUT / "e2e"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    workloads = args.only or list(WORKLOADS)
    runs: list[Run] = []
    idle: list[Run] = []
    with servers(work, args.meshes, checkouts=args.checkouts) as bench:
        targets = bench.targets
        unique: dict[tuple[str, int, str], Role] = {}
        for target, roles in bench.roles.items():
            for role in roles:
                name = (
                    role.name
                    if target in ("thumbor", "direct")
                    else (f"{bench.mesh_of(target).config.data_dir.name}: {role.name}")
                )
                unique[(name, role.pid, role.part)] = Role(name, role.pid, role.part)
        with RssSampler(list(unique.values())) as sampler:
            for workload in workloads:
                for target in targets:
                    probe(bench, target, workload)
                    bench.run(target, workload, args.connections, 2)  # warm-up
            for number in range(args.rounds):
                for workload in workloads:
                    shift = number % len(targets)
                    order = targets[shift:] + targets[:shift]
                    for target in order:
                        run = bench.run(target, workload, args.connections, args.seconds)
                        runs.append(run)
                        print(
                            f"round {number + 1} {workload:9} {target:14} {run.rate:6.1f}/s "
                            f"p50 {run.p50_ms:5.0f} ms  cpu/req "
                            f"{sum(run.cpu.values()) / max(run.completed, 1) * 1000:6.1f} ms"
                            f"  errors {run.errors}",
                            flush=True,
                        )
                    for target in order:
                        idle.append(bench.run(target, workload, 1, args.idle_seconds))
        rss: dict[str, tuple[int, int, int]] = {}
        for role in unique.values():
            hwm = high_water_mark(role.pid) if role.part != "descendants" else 0
            old = rss.get(role.name, (0, 0, 0))
            rss[role.name] = (
                max(old[0], hwm),
                max(old[1], sampler.single.get(role.name, 0)),
                max(old[2], sampler.total.get(role.name, 0)),
            )
    extra = {}
    if not args.skip_ratios:
        extra["Media against the ffmpeg CLI (`bench/media.py`, same run)"] = sub_bench(
            "bench.media"
        )
        extra["Archives against zip/tar/7z (`bench/archive.py`, same run)"] = sub_bench(
            "bench.archive", "--size-mb", "100"
        )
    write_results(
        args.output, conditions(args, load_before), runs=runs, idle=idle, rss=rss, extra=extra
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
