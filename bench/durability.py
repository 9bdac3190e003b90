"""What `sync_interval: always` costs: JetStream publish latency with it and with the default
(fsync every two minutes), side by side in the same run.

    .venv/bin/python -m bench.durability [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats

from launcher import nats as launcher_nats


async def publish_latencies(url: str, count: int) -> list[float]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BENCH", subjects=["bench.>"])
        samples = []
        payload = b"x" * 512
        for number in range(count):
            started = time.perf_counter()
            await js.publish("bench.task", payload, headers={"Nats-Msg-Id": str(number)})
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await nc.close()


async def measure(template: str, count: int) -> list[float]:
    original = launcher_nats.CONFIG_TEMPLATE
    launcher_nats.CONFIG_TEMPLATE = template
    try:
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
            server = launcher_nats.start_nats(Path(tmp))
            try:
                return await publish_latencies(server.url, count)
            finally:
                server.stop()
    finally:
        launcher_nats.CONFIG_TEMPLATE = original


async def main(count: int) -> None:
    always = launcher_nats.CONFIG_TEMPLATE
    default = always.replace("  sync_interval: always\n", "")
    rows = []
    for label, template in (("sync_interval: always", always), ("default (2 min)", default)):
        samples = await measure(template, count)
        rows.append((label, statistics.median(samples), sorted(samples)[int(len(samples) * 0.99)]))
    print(f"{count} publishes of 512 B, store under {Path.cwd()}")
    print(f"{'config':24} {'median µs':>10} {'p99 µs':>10}")
    for label, median, p99 in rows:
        print(f"{label:24} {median * 1e6:10.0f} {p99 * 1e6:10.0f}")
    print(f"cost of always: {(rows[0][1] - rows[1][1]) * 1e6:.0f} µs per publish (median)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    asyncio.run(main(parser.parse_args().messages))
