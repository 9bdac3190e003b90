"""`make k8s-check`: every overlay rendered once per session with the real kustomize (kubectl's)
and the NATS chart with the real helm, both from `make k8s-tools` (.tools/, or $TOOLS)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS = Path(os.environ.get("TOOLS") or ROOT / ".tools")
OVERLAYS = ("single-node", "production")
NATS_CHART = K8S / "vendor" / "nats"
NATS_VALUES = K8S / "overlays" / "production" / "nats-values.yaml"
# Applied to namespace nats beside the chart (the chart has no NetworkPolicy).
NATS_POLICY = K8S / "overlays" / "production" / "nats-network-policy.yaml"

Object = dict[str, Any]


def tool(name: str) -> Path:
    for folder in (TOOLS / "bin", TOOLS / "venv" / "bin"):
        if (folder / name).exists():
            return folder / name
    pytest.fail(f"{name} is missing: `make k8s-tools` installs it under {TOOLS}")


def run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Rendering:
    """What one overlay (or the NATS chart) renders to."""

    name: str
    path: Path
    objects: list[Object]

    def of_kind(self, kind: str) -> list[Object]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Object:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {kind}/{name} found {len(found)} times"
        return found[0]

    @property
    def config(self) -> dict[str, str]:
        data: dict[str, str] = self.get("ConfigMap", "convertmesh")["data"]
        return data


@dataclass
class Renderings:
    directory: Path
    overlays: dict[str, Rendering]
    nats: Rendering

    def __iter__(self) -> Iterator[Rendering]:
        return iter(self.overlays.values())


def _load(name: str, path: Path, text: str) -> Rendering:
    path.write_text(text)
    return Rendering(name, path, [o for o in yaml.safe_load_all(text) if o])


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Renderings:
    out = tmp_path_factory.mktemp("rendered")
    kubectl, helm = tool("kubectl"), tool("helm")
    overlays = {
        name: _load(name, out / f"{name}.yaml", run(kubectl, "kustomize", K8S / "overlays" / name))
        for name in OVERLAYS
    }
    nats = _load(
        "nats",
        out / "nats-production.yaml",
        run(helm, "template", "nats", NATS_CHART, "--skip-tests", "-f", NATS_VALUES)
        + "\n---\n"
        + NATS_POLICY.read_text(),
    )
    return Renderings(out, overlays, nats)
