"""The offline checks of `make k8s-check`: schemas, policy scan, Dockerfile lint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.deploy.conftest import K8S, ROOT, Renderings, run, tool

# The oldest Kubernetes release the manifests support (gRPC probes and every API they use).
KUBERNETES_VERSION = "1.33.0"


def test_every_overlay_and_the_nats_chart_validate_strictly(rendered: Renderings) -> None:
    files = [r.path for r in rendered] + [rendered.nats.path]
    output = run(tool("python"), K8S / "validate.py", KUBERNETES_VERSION, *files)
    count = sum(len(r.objects) for r in rendered) + len(rendered.nats.objects)
    assert f"{count} objects, 0 invalid" in output


def test_the_validator_refuses_unknown_fields_in_custom_resources(
    rendered: Renderings, tmp_path: Path
) -> None:
    scaled = rendered.overlays["production"].get("ScaledObject", "media")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = 3  # the field is maxReplicaCount
    path = tmp_path / "broken.yaml"
    path.write_text(json.dumps(broken))
    done = subprocess.run(
        [tool("python"), K8S / "validate.py", KUBERNETES_VERSION, path],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "'maxReplicas' was unexpected" in done.stdout


def test_policy_scan_has_no_failure(rendered: Renderings) -> None:
    """checkov over everything rendered; its skip list (checkov.yaml) gives each skip's reason.
    --skip-download keeps it off the network."""
    done = subprocess.run(
        [
            tool("checkov"),
            "--config-file",
            K8S / "checkov.yaml",
            "-d",
            rendered.directory,
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(done.stdout)
    report = reports[0] if isinstance(reports, list) else reports
    failed = [
        f"{f['check_id']} {f['check_name']}: {f['resource']}"
        for f in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 500, report["summary"]
    assert done.returncode == 0, done.stderr[-2000:]


def test_dockerfile_lint_is_clean() -> None:
    output = run(tool("hadolint"), "--failure-threshold", "info", ROOT / "Dockerfile")
    assert output.strip() == ""
