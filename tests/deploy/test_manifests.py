"""What the rendered overlays promise, checked against the services' own settings code."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from mesh.bus import streams
from services.archive.settings import Settings as ArchiveSettings
from services.gateway.settings import Settings as GatewaySettings
from services.image.settings import Settings as ImageSettings
from services.media.settings import Settings as MediaSettings
from services.orchestrator.settings import Settings as OrchestratorSettings
from tests.deploy.conftest import ROOT, Object, Rendering, Renderings

WORKERS = ("image", "media", "archive")
SERVICES = ("gateway", "orchestrator", *WORKERS)
# What a worker needs besides its sandboxed conversions: the Python process with its codecs
# loaded, the fork server, buffers of the blob streams.
WORKER_OVERHEAD_BYTES = 512 * 1024**2
# After the drain: publishing the last results, closing the NATS connection.
CLOSE_SECONDS = 30
# Keys the services do not read themselves but the processes need.
NOT_READ_BY_SERVICES = {"TMPDIR": "Python's tempfile and the sandbox's fork-server socket"}
# Variable -> (Secret, the services that need it); no kustomization creates these Secrets.
SECRETS = {
    "API_KEYS": ("convertmesh-keys", {"gateway"}),
    "LINK_SIGNING_KEYS": ("convertmesh-links", {"gateway", "orchestrator"}),
}
WORKER_SETTINGS: dict[str, type[ImageSettings] | type[MediaSettings] | type[ArchiveSettings]] = {
    "image": ImageSettings,
    "media": MediaSettings,
    "archive": ArchiveSettings,
}
_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
# Reading a variable: mesh.settings.Env's methods (env.integer("X", ...)), its helper env_int,
# and plain mappings (os.environ.get("X")).
_ENV_READERS = {"integer", "optional_integer", "number", "flag", "text", "raw", "optional"}
_ENV_FUNCTIONS = {"env_int"}


def _env_names(node: ast.AST) -> Iterator[str]:
    """Names of the variables read by a call like env_int("X"), os.environ.get("X"),
    env.get(f"{prefix}_X"), os.environ["X"]."""
    if isinstance(node, ast.Call):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        on_env = re.search(r"(^|\.)(env|environ|environment)$", receiver) is not None
        reads_env = (
            called in _ENV_FUNCTIONS
            or (called in _ENV_READERS and on_env)
            or (called in {"get", "pop"} and on_env)
        )
        if reads_env and node.args:
            yield from _literal(node.args[0])
    elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
        yield from _literal(node.slice)


def _literal(arg: ast.expr) -> Iterator[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _NAME.match(arg.value):
        yield arg.value
    elif isinstance(arg, ast.JoinedStr):
        # f"{prefix}_CONCURRENCY": the prefix is a worker's name, upper-cased.
        tail = "".join(str(v.value) for v in arg.values if isinstance(v, ast.Constant))
        if tail.startswith("_") and _NAME.match(f"X{tail}"):
            yield from (f"{worker.upper()}{tail}" for worker in WORKERS)


def variables_in_source() -> set[str]:
    names: set[str] = set()
    for folder in ("mesh", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names.update(_env_names(node))
    return names


class Recording(Mapping[str, str]):
    """An environment that remembers every variable looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.seen: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def variables_read_by_settings(env: dict[str, str]) -> set[str]:
    """Every variable the services' settings look up while loading from `env`: they parse
    and validate every value the ConfigMap gives them, too (a bad one raises here)."""
    recording = Recording(env)
    for settings in (OrchestratorSettings, ImageSettings, MediaSettings, ArchiveSettings):
        settings.from_env(recording)
    # The gateway's settings still read the process environment itself.
    environ_type: Any = type(os.environ)
    original = environ_type.__getitem__

    def recorded(self: Any, key: str) -> Any:
        recording.seen.add(key)
        return original(self, key)

    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setattr(environ_type, "__getitem__", recorded)
        GatewaySettings.from_env()
    return {name for name in recording.seen if _NAME.match(name)}


def containers(rendering: Rendering) -> Iterator[tuple[Object, Object]]:
    for kind in ("Deployment", "StatefulSet"):
        for workload in rendering.of_kind(kind):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                yield workload, container


def pod_env(rendering: Rendering, container: Object) -> dict[str, str]:
    env = dict(rendering.config)
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    for item in container.get("env", []):
        if "valueFrom" in item:  # Secrets: a value of the right shape
            env[item["name"]] = {"API_KEYS": "tenant:secret-key"}.get(item["name"], "k" * 32)
    return env


def quantity(text: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]i)?", text).groups()  # type: ignore[union-attr]
    return int(float(number) * units[unit or ""])


@pytest.fixture(params=["single-node", "production"])
def overlay(request: pytest.FixtureRequest, rendered: Renderings) -> Rendering:
    return rendered.overlays[request.param]


def test_every_variable_read_is_configured_and_every_key_is_read(overlay: Rendering) -> None:
    configured = set(overlay.config) | {
        item["name"]
        for _, container in containers(overlay)
        for item in container.get("env", [])
        if "value" in item
    }
    secret = {
        item["name"]
        for _, container in containers(overlay)
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert secret == set(SECRETS)
    gateway = overlay.get("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    read = variables_in_source() | variables_read_by_settings(pod_env(overlay, gateway))
    assert read >= {"NATS_REPLICAS", "HEALTH_PORT", "TASK_DRAIN_SECONDS", "PUBLIC_BASE_URL"}
    missing = read - configured - secret
    assert not missing, f"read by the services but not in the ConfigMap/Secret/env: {missing}"
    unread = configured - read - set(NOT_READ_BY_SERVICES)
    assert not unread, f"in the ConfigMap but read by no service: {unread}"


def test_no_secret_is_rendered_and_the_services_need_theirs(rendered: Renderings) -> None:
    for rendering in rendered:
        assert not rendering.of_kind("Secret"), "applying would overwrite the operator's keys"
        for variable, (secret, services) in SECRETS.items():
            for service in SERVICES:
                pod = rendering.get("Deployment", service)["spec"]["template"]["spec"]
                found = [e for e in pod["containers"][0].get("env", []) if e["name"] == variable]
                if service not in services:
                    assert not found, (service, variable)
                    continue
                (item,) = found
                reference = item["valueFrom"]["secretKeyRef"]
                assert reference == {"name": secret, "key": variable}  # not optional
            for _, container in containers(rendering):
                assert "secretRef" not in str(container.get("envFrom")), "a whole Secret"


@pytest.mark.parametrize("worker", WORKERS)
def test_sandbox_caps_times_concurrency_fit_the_pod(overlay: Rendering, worker: str) -> None:
    loader = WORKER_SETTINGS[worker]
    deployment = overlay.get("Deployment", worker)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = loader.from_env(pod_env(overlay, container)).worker
    limit = quantity(container["resources"]["limits"]["memory"])
    request = quantity(container["resources"]["requests"]["memory"])
    caps = settings.runtime.concurrency * (settings.task_memory_bytes or 0)
    assert settings.task_memory_bytes, "every worker's conversions are capped in the pods"
    assert caps + WORKER_OVERHEAD_BYTES <= limit, (worker, caps, limit)
    assert request == limit, "requests = limits: the scheduler reserves what the caps allow"
    # Every task's scratch quota at once fits the scratch volume.
    (scratch,) = [v for v in pod["volumes"] if v["name"] == "scratch"]
    quotas = settings.runtime.concurrency * (settings.runtime.task_scratch_bytes or 0)
    assert settings.runtime.task_scratch_bytes, "every worker's scratch is capped per task"
    assert quotas <= quantity(scratch["emptyDir"]["sizeLimit"]), (worker, quotas)
    # The drain lets a task that just started finish; the grace period covers the drain.
    assert settings.runtime.drain_seconds >= settings.task_seconds
    assert pod["terminationGracePeriodSeconds"] >= settings.runtime.drain_seconds + CLOSE_SECONDS


def test_every_container_has_probes_and_is_locked_down(rendered: Renderings) -> None:
    for rendering in [*rendered, rendered.nats]:
        for workload, container in containers(rendering):
            name = f"{rendering.name}: {workload['metadata']['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, name
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            pod = workload["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["automountServiceAccountToken"] is False, name
            assert "memory" in container["resources"]["limits"], name


def test_workers_probe_their_grpc_health_and_everything_is_scraped(overlay: Rendering) -> None:
    config = overlay.config
    for service in SERVICES:
        deployment = overlay.get("Deployment", service)
        template = deployment["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["containerPort"] for p in container["ports"]}
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        # The gateway's metrics too are off its public port.
        expected = config["METRICS_PORT"]
        assert annotations["prometheus.io/port"] == expected != config["HTTP_PORT"]
        assert int(expected) in ports
        if service in WORKERS:
            health = int(config["HEALTH_PORT"])
            assert health in ports
            assert container["readinessProbe"]["grpc"] == {"port": health}
            assert container["livenessProbe"]["grpc"] == {"port": health, "service": "liveness"}
        assert overlay.get("PodDisruptionBudget", service)["spec"]["maxUnavailable"] == 1


def _policies_for(rendering: Rendering, labels: dict[str, str]) -> list[Object]:
    return [
        p
        for p in rendering.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def test_network_policies_open_only_what_each_service_needs(overlay: Rendering) -> None:
    policies = {p["metadata"]["name"]: p for p in overlay.of_kind("NetworkPolicy")}
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    opened_to_all = set()
    for service in SERVICES:
        labels = overlay.get("Deployment", service)["spec"]["template"]["metadata"]["labels"]
        applying = _policies_for(overlay, labels)
        ingress = [rule for p in applying for rule in p["spec"].get("ingress", [])]
        if any("from" not in rule for rule in ingress):
            opened_to_all.add(service)
        egress = [rule for p in applying for rule in p["spec"].get("egress", [])]
        ports = {port["port"] for rule in egress for port in rule.get("ports", [])}
        blocks = [peer for rule in egress for peer in rule["to"] if "ipBlock" in peer]
        # Everyone may send traces to a collector in `monitoring` (OTLP gRPC and HTTP).
        assert {4317, 4318} <= ports, service
        ports -= {4317, 4318}
        if service in WORKERS:
            assert ports == {53, 4222} and not blocks, (service, egress)
        if service == "orchestrator":
            assert {4222, 53} <= ports and blocks  # NATS, DNS, the internet (callbacks)
            assert "10.0.0.0/8" in blocks[0]["ipBlock"]["except"]
        if service == "gateway":
            assert ports == {53, 50051} and not blocks
    assert opened_to_all == {"gateway"}


def test_scaled_objects_read_each_workers_consumer(rendered: Renderings) -> None:
    production = rendered.overlays["production"]
    headless = rendered.nats.get("Service", "nats-headless")
    assert "monitor" in {p["name"] for p in headless["spec"]["ports"]}
    for worker in WORKERS:
        scaled = production.get("ScaledObject", worker)
        assert scaled["spec"]["scaleTargetRef"] == {"name": worker}
        assert scaled["spec"]["minReplicaCount"] >= 1
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        # The runtime's durable consumer is named after the service, on the TASKS stream.
        assert (meta["stream"], meta["consumer"]) == (streams.TASKS_STREAM, worker)
        host, port = meta["natsServerMonitoringEndpoint"].split(":")
        assert host == f"nats-headless.{headless['metadata']['namespace']}.svc.cluster.local"
        assert port == "8222"
    assert not rendered.overlays["single-node"].of_kind("ScaledObject")


def test_production_nats_is_a_replicated_jetstream_cluster(rendered: Renderings) -> None:
    production, nats = rendered.overlays["production"], rendered.nats
    server = nats.get("StatefulSet", "nats")
    assert server["spec"]["replicas"] == 3 == int(production.config["NATS_REPLICAS"])
    (claim,) = server["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    config = nats.get("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert '"sync_interval": "always"' in config
    assert '"store_dir": "/data"' in config
    assert nats.get("PodDisruptionBudget", "nats")
    service = nats.get("Service", "nats")
    assert {"nats": 4222, "monitor": 8222}.items() <= {
        p["name"]: p["port"] for p in service["spec"]["ports"]
    }.items()
    namespace = service["metadata"]["namespace"]
    assert production.config["NATS_URL"] == f"nats://nats.{namespace}.svc.cluster.local:4222"
    # The NATS clients' egress policy selects the chart's pods in the chart's namespace.
    (rule,) = production.get("NetworkPolicy", "nats-clients")["spec"]["egress"]
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    for service_name in ("gateway", "orchestrator"):
        assert production.get("Deployment", service_name)["spec"]["replicas"] == 2
    # NATS's own policy admits those clients, the routes, and KEDA on the monitoring port.
    policy = nats.get("NetworkPolicy", "nats")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (clients, routes, monitoring) = policy["ingress"]
    (client,) = clients["from"]
    assert client["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "convertmesh"
    }
    assert client["podSelector"]["matchLabels"] == {"convertmesh/nats-client": "true"}
    assert [p["port"] for p in clients["ports"]] == [4222]
    assert [p["port"] for p in routes["ports"]] == [6222]
    assert [p["port"] for p in monitoring["ports"]] == [8222]
    readers = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in monitoring["from"]
    }
    assert readers == {"keda", "monitoring"}


def test_single_node_runs_its_own_nats(rendered: Renderings) -> None:
    single = rendered.overlays["single-node"]
    assert single.config["NATS_URL"] == "nats://nats:4222"
    assert single.config["NATS_REPLICAS"] == "1"
    server = single.get("StatefulSet", "nats")
    assert server["spec"]["replicas"] == 1
    assert server["spec"]["volumeClaimTemplates"]
    assert "sync_interval: always" in single.get("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert {p["port"] for p in single.get("Service", "nats")["spec"]["ports"]} == {4222, 8222}
    for deployment in single.of_kind("Deployment"):
        assert deployment["spec"]["replicas"] == 1
    assert not single.of_kind("HorizontalPodAutoscaler")
    (rule,) = single.get("NetworkPolicy", "nats-clients")["spec"]["egress"]
    assert rule["to"] == [{"podSelector": {"matchLabels": {"app": "nats"}}}]


def test_every_object_lives_in_its_namespace(rendered: Renderings) -> None:
    for rendering in rendered:
        for obj in rendering.objects:
            if obj["kind"] != "Namespace":
                assert obj["metadata"].get("namespace") == "convertmesh", obj["metadata"]
    assert {o["metadata"].get("namespace") for o in rendered.nats.objects} == {"nats"}


def test_source_scan_finds_the_dynamic_worker_variables() -> None:
    names = variables_in_source()
    assert {"IMAGE_CONCURRENCY", "ARCHIVE_TASK_MEMORY_MB", "NATS_URL", "API_KEYS"} <= names
