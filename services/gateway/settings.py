"""Gateway settings, read once from the environment."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from mesh import eventloop
from mesh.links import LinkSigner
from mesh.settings import Env, env_int, load
from mesh.telemetry import MetricsSettings
from mesh.tracing import TracingSettings
from services.gateway.guard import GuardLimits

_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
UNRATED_UPLOAD_DEADLINE_SECONDS = 86400.0


def parse_api_keys(raw: str) -> dict[str, str]:
    """`tenant:key,tenant:key` -> {key: tenant}; names the bad entry when one is malformed.

    No key at all is refused too: a gateway that answers 401 to everyone while it reports
    healthy (an empty Secret applied over the real one) must not start."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        tenant, sep, key = item.partition(":")
        if not sep or not key or not _TENANT.match(tenant):
            raise ValueError(
                "API_KEYS must be tenant:key pairs separated by commas; tenant names use "
                f"letters, digits, '-' and '_' (bad entry starts with {item[:8]!r})"
            )
        keys[key] = tenant
    if not keys:
        raise ValueError(
            "API_KEYS is empty: set tenant:key pairs (in Kubernetes, the convertmesh-keys "
            "Secret); with no key every request would be refused"
        )
    return keys


def parse_forwarded_allow_ips(raw: str) -> str:
    """`FORWARDED_ALLOW_IPS`: addresses and networks (`10.0.0.0/8,::1`) of the proxies whose
    X-Forwarded-For the gateway believes, or `*` for any peer; empty: none."""
    entries = [part.strip() for part in raw.split(",") if part.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry)
        except ValueError:
            raise ValueError(
                "FORWARDED_ALLOW_IPS must be IP addresses or networks (10.0.0.0/8, host bits "
                f"zero) separated by commas, or *; got {entry!r}"
            ) from None
    return ",".join(entries)


def parse_origins(raw: str) -> tuple[str, ...]:
    """`CORS_ORIGINS`: `https://app.example,https://admin.example`, or `*` for any origin."""
    origins = tuple(filter(None, (part.strip().rstrip("/") for part in raw.split(","))))
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(
                "CORS_ORIGINS must be origins like https://app.example (scheme and host, "
                f"no path) separated by commas, or *; got {origin!r}"
            )
    return origins


@dataclass(frozen=True)
class Settings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    orchestrator: str = "127.0.0.1:50051"
    api_keys: dict[str, str] = field(default_factory=dict)
    max_files: int = 100
    max_file_bytes: int = 2 * 1024**3
    max_body_bytes: int = 4 * 1024**3
    rpc_timeout_seconds: float = 10.0
    sync_max_bytes: int = 50 * 1024 * 1024
    sync_timeout_seconds: float = 60.0
    # A sync conversion of one file at most this large goes straight to a worker, inline,
    # without a stored job (the orchestrator's Convert); 0: every one is a job.
    sync_inline_max_bytes: int = 768 * 1024
    # How long a job's creation may wait for the orchestrator to fetch its sourceUrl.
    source_url_timeout_seconds: float = 300.0
    log_level: str = "INFO"
    # Signs and checks downloadUrls; the orchestrator signs callback bodies with the same keys.
    links: LinkSigner = field(default_factory=LinkSigner.ephemeral)
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    event_loop: str = "uvloop"
    # How slowly clients may send, and how many uploads they may hold open (services.gateway.guard).
    guard: GuardLimits = field(default_factory=GuardLimits)
    # Open connections uvicorn serves at once; over it, 503 (0: no cap).
    max_connections: int = 2048
    # Prometheus metrics on their own port (METRICS_PORT), never on the public one.
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    traces: TracingSettings = field(default_factory=TracingSettings)
    # The deadline of one file's UploadBlob call; 0: as long as the largest file takes at the
    # minimum upload rate (`upload_deadline`).
    upload_deadline_seconds: float = 0.0
    # Proxies (an ingress) whose X-Forwarded-For/-Proto name the client; empty: the peer is.
    forwarded_allow_ips: str = ""

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(self.api_keys.values())

    @property
    def upload_deadline(self) -> float:
        """Seconds one file's UploadBlob call may last. By default, what a file of
        MAX_FILE_BYTES takes at UPLOAD_MIN_BYTES_PER_SECOND (the guard cuts off anything
        slower), plus a rate window and a pause of slack; a day when no rate is enforced."""
        if self.upload_deadline_seconds:
            return self.upload_deadline_seconds
        guard = self.guard
        if not guard.min_bytes_per_second:
            return UNRATED_UPLOAD_DEADLINE_SECONDS
        at_minimum = self.max_file_bytes / guard.min_bytes_per_second
        return at_minimum + 2 * guard.rate_window_seconds + guard.body_idle_seconds

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            http_host=os.environ.get("HTTP_HOST", cls.http_host),
            http_port=env_int("HTTP_PORT", cls.http_port),
            orchestrator=os.environ.get(
                "ORCHESTRATOR_ADDR", f"127.0.0.1:{env_int('GRPC_PORT', 50051)}"
            ),
            api_keys=parse_api_keys(os.environ.get("API_KEYS", "")),
            max_files=env_int("MAX_FILES_PER_JOB", cls.max_files),
            max_file_bytes=env_int("MAX_FILE_BYTES", cls.max_file_bytes),
            max_body_bytes=env_int("MAX_BODY_BYTES", cls.max_body_bytes),
            sync_max_bytes=env_int("SYNC_MAX_BYTES", cls.sync_max_bytes),
            sync_timeout_seconds=env_int("SYNC_TIMEOUT_SECONDS", int(cls.sync_timeout_seconds)),
            sync_inline_max_bytes=env_int("SYNC_INLINE_MAX_BYTES", cls.sync_inline_max_bytes),
            source_url_timeout_seconds=env_int(
                "SOURCE_URL_TIMEOUT_SECONDS", int(cls.source_url_timeout_seconds)
            ),
            log_level=os.environ.get("LOG_LEVEL", cls.log_level),
            links=load(LinkSigner.read, os.environ),
            cors_origins=parse_origins(os.environ.get("CORS_ORIGINS", "")),
            event_loop=load(eventloop.read, os.environ),
            guard=load(_guard_limits, os.environ),
            max_connections=load(
                lambda env: env.integer("HTTP_MAX_CONNECTIONS", cls.max_connections, minimum=0),
                os.environ,
            ),
            metrics=load(MetricsSettings.read, os.environ),
            traces=load(TracingSettings.read, os.environ),
            forwarded_allow_ips=parse_forwarded_allow_ips(
                os.environ.get("FORWARDED_ALLOW_IPS", "")
            ),
            upload_deadline_seconds=load(
                lambda env: env.number("UPLOAD_DEADLINE_SECONDS", 0.0, minimum=0), os.environ
            ),
        )


def _guard_limits(env: Env) -> GuardLimits:
    d = GuardLimits()
    return GuardLimits(
        header_seconds=env.number("HTTP_HEADER_TIMEOUT_SECONDS", d.header_seconds, positive=True),
        body_idle_seconds=env.number("UPLOAD_IDLE_SECONDS", d.body_idle_seconds, positive=True),
        min_bytes_per_second=env.number(
            "UPLOAD_MIN_BYTES_PER_SECOND", d.min_bytes_per_second, minimum=0
        ),
        rate_window_seconds=d.rate_window_seconds,
        max_uploads=env.integer("MAX_CONCURRENT_UPLOADS", d.max_uploads, minimum=1),
        max_uploads_per_tenant=env.integer(
            "MAX_CONCURRENT_UPLOADS_PER_TENANT", d.max_uploads_per_tenant, minimum=1
        ),
        max_auth_failures=env.integer("AUTH_FAILURES_PER_MINUTE", d.max_auth_failures, minimum=1),
        auth_window_seconds=d.auth_window_seconds,
    )
