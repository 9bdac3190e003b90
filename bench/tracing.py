"""What tracing costs, end to end: CPU per 500 px thumbnail through the mesh without an exporter,
with one (OTLP/HTTP to a loopback collector that only counts what it gets) sampling every
request, and with one sampling a tenth (the standard `parentbased_traceidratio` sampler), side
by side in one run; writes `bench/tracing.md`. Goal: under 5 % more CPU per request.

    .venv/bin/python -m bench.tracing [--rounds 3] [--seconds 10] [--connections 4]

It drives `bench.e2e`'s meshes (three `launcher` meshes, `untraced`, `traced`, `sampled`,
each with its own nats-server), its wrk scripts and its CPU accounting (every process of a mesh,
sandboxes included, read before and after each run); the flows (sync `/api/convert` and async job ->
events -> download) run in interleaved rounds whose order rotates (thumbor and pyvips direct,
`make bench`'s baselines, are not started). With tracing off, the helpers the services call cost
what the last table says per call (they return at once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import timeit
from pathlib import Path

from bench.e2e import OUT, ROOT, Run, probe, servers, summarise
from mesh import tracing
from tests.otlp import HttpReceiver

WORKLOAD = "thumbnail"
GOAL = 0.05


def disabled_costs() -> list[tuple[str, float]]:
    """Nanoseconds per call of the helpers the services call, with tracing off (this process
    never configures it)."""
    assert not tracing.enabled()
    headers = {"Nats-Msg-Id": "x"}

    def span() -> None:
        with tracing.span("x"):
            pass

    calls = {
        "span()": span,
        "inject(headers)": lambda: tracing.inject(headers),
        "extract(headers)": lambda: tracing.extract(headers),
        "annotate(attributes)": lambda: tracing.annotate({"a": 1}),
        "carrier()": tracing.carrier,
    }
    number = 200_000
    return [
        (name, min(timeit.repeat(call, number=number, repeat=3)) / number * 1e9)
        for name, call in calls.items()
    ]


# The meshes: labels and the settings each adds (the OTLP endpoints are filled in at start).
VARIANTS = {
    "untraced": {},
    "traced": {},
    "sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}
FLOWS = ("sync", "async")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--output", type=Path, default=ROOT / "tracing.md")
    args = parser.parse_args()
    work = OUT / "tracing"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: list[Run] = []
    requests = dict.fromkeys(VARIANTS, 0)
    with HttpReceiver(keep=False) as traced_sink, HttpReceiver(keep=False) as sampled_sink:
        sinks = {"traced": traced_sink, "sampled": sampled_sink}
        variants = {
            label: {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sinks[label].endpoint}
            if label in sinks
            else env
            for label, env in VARIANTS.items()
        }
        with servers(work, variants, baselines=False) as bench:
            targets = [t for t in bench.targets if t not in ("thumbor", "direct")]
            for target in targets:
                probe(bench, target, WORKLOAD)
                warm = bench.run(target, WORKLOAD, args.connections, 2)
                requests[label_of(target)] += warm.completed + 1
            for number in range(args.rounds):
                order = targets[number % len(targets) :] + targets[: number % len(targets)]
                for target in order:
                    run = bench.run(target, WORKLOAD, args.connections, args.seconds)
                    runs.append(run)
                    requests[label_of(target)] += run.completed
                    print(
                        f"round {number + 1} {target:15} {run.rate:5.1f}/s cpu/req "
                        f"{sum(run.cpu.values()) / max(run.completed, 1) * 1000:6.1f} ms",
                        flush=True,
                    )
        # The meshes have stopped: their exporters flushed on the way out.
        spans = {label: sink.received / max(requests[label], 1) for label, sink in sinks.items()}
    write(args, runs, targets, spans, load_before)
    print(f"wrote {args.output}")


def label_of(target: str) -> str:
    return target.rsplit("-", 1)[0]


def write(
    args: argparse.Namespace,
    runs: list[Run],
    targets: list[str],
    spans_per_request: dict[str, float],
    load_before: tuple[float, ...],
) -> None:
    stats = {t: summarise(runs, t, WORKLOAD) for t in targets}
    out = [
        "# What tracing costs",
        "",
        "Written by `bench/tracing.py` from one run (`make bench-tracing`); rerun to refresh.",
        "",
        f"- load: wrk, {args.connections} connections, {args.seconds:g} s per run, "
        f"{args.rounds} interleaved rounds (the order rotates), after a warm-up run of each; "
        f"load average {', '.join(f'{x:.2f}' for x in load_before)} before the run",
        "- `untraced`: no OTEL_* variable (no provider, no instrumentation); `traced`: "
        "OTEL_EXPORTER_OTLP_ENDPOINT to a loopback OTLP/HTTP receiver, SDK defaults (batch "
        f"export every 5 s), every request sampled: {spans_per_request['traced']:.1f} spans per "
        "request arrived; `sampled`: the same with `OTEL_TRACES_SAMPLER=parentbased_traceidratio"
        f"`, `OTEL_TRACES_SAMPLER_ARG=0.1`: {spans_per_request['sampled']:.1f} spans per request",
        "- CPU: every process of the mesh (gateway, orchestrator, the three workers and the "
        "image sandboxes, nats-server), per completed request; the receivers' own CPU is not "
        "counted",
        "",
        "| flow | req/s (median) | p50 ms | CPU ms/req | against untraced |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target in targets:
        st = stats[target]
        flow = target.rsplit("-", 1)[1]
        base = stats[f"untraced-{flow}"]["cpu_total"]
        ratio = st["cpu_total"] / base if base else 0.0
        out.append(
            f"| {target} | {st['rate']:.1f} | {st['p50']:.0f} | {st['cpu_total']:.1f} | "
            f"{ratio:.3f}x |"
        )
    names = [k[4:] for k in stats[targets[0]] if k.startswith("cpu:")]
    out += ["", "## CPU per request, by process (ms)", ""]
    out += ["| process | " + " | ".join(targets) + " |", "| --- |" + " --- |" * len(targets)]
    for name in names:
        cells = " | ".join(f"{stats[t]['cpu:' + name]:.1f}" for t in targets)
        out.append(f"| {name} | {cells} |")
    out.append("")
    for label in ("traced", "sampled"):
        overheads = [
            stats[f"{label}-{flow}"]["cpu_total"] / stats[f"untraced-{flow}"]["cpu_total"] - 1
            for flow in FLOWS
        ]
        verdict = "within" if max(overheads) < GOAL else "over"
        out.append(
            f"- `{label}`: CPU per request sync {overheads[0] * 100:+.1f} %, async "
            f"{overheads[1] * 100:+.1f} % against `untraced` ({verdict} the {GOAL * 100:.0f} % "
            f"goal; mean {statistics.mean(overheads) * 100:+.1f} %)."
        )
    out += [
        "",
        "## With tracing off: the helpers per call",
        "",
        "| helper | ns per call |",
        "| --- | --- |",
        *(f"| `tracing.{name}` | {ns:.0f} |" for name, ns in disabled_costs()),
        "",
    ]
    args.output.write_text("\n".join(out))


if __name__ == "__main__":
    main()
