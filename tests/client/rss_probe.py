"""Run by test_streaming in a process of its own: upload one file as a job, download one
output, and print the process's resident memory before and at its peak (JSON on stdout)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from convertmesh import Client, Options


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main(url: str, source: str, output: str) -> None:
    with Client(url, "key") as client:
        client.list_jobs(limit=1)  # connections, imports and TLS-free setup done before measuring
        before = resident_bytes()
        job_id = client.create_job([source], options=Options(format="tar"))
        client.download(f"{url}/api/jobs/{job_id}/files/0", output)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
