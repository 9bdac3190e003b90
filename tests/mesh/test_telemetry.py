"""Every metric family the services export, checked by promtool's linter (Prometheus' naming
and unit conventions: base units, `_total` on counters, help on every family)."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import Counter, Gauge, Histogram, generate_latest

from mesh import telemetry


def families() -> list[Counter | Gauge | Histogram]:
    return [
        value
        for value in vars(telemetry).values()
        if isinstance(value, Counter | Gauge | Histogram)
    ]


def test_every_family_passes_promtool_with_a_sample_in_each() -> None:
    for family in families():
        child = family.labels(*("x" for _ in family._labelnames)) if family._labelnames else family
        if isinstance(child, Counter | Gauge):
            child.inc(0)
        else:
            child.observe(0.01)
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) comes with make system-deps"
    text = generate_latest().decode()
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for family in families():
        assert family._name.startswith("convertmesh_")
        assert f"# HELP {family._name}" in text


def test_units_are_in_the_names() -> None:
    for family in families():
        if isinstance(family, Histogram):
            assert family._name.endswith("_seconds"), family._name
        if "bytes" in family._documentation.lower() and not isinstance(family, Histogram):
            assert family._name.endswith(("_bytes", "_bytes_total")), family._name
