"""Signed download links: `<path>?expires=<unix>&signature=<hex>`, usable without the API key.

Convertly hands out download URLs that work in an `<img>`, a browser download or a plain
fetch, so every `downloadUrl` (jobs, lists, events, callback bodies) carries an expiring
HMAC-SHA256 signature over the tenant, the path and the expiry. The gateway and the
orchestrator share the keys through one setting, `LINK_SIGNING_KEYS`: the first key signs,
every key verifies, so a key can be rotated without breaking live links (put the new key
first, keep the old one second until its links have expired).

Expiry times are rounded up to a step of at most five minutes: a job polled every second
hands out the same link for a while, so browsers can cache what it points at.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from mesh.errors import MeshError, Reason
from mesh.settings import Env

KEYS_VARIABLE = "LINK_SIGNING_KEYS"
LIFETIME_VARIABLE = "LINK_LIFETIME_SECONDS"
DEFAULT_LIFETIME_SECONDS = 24 * 3600
MAX_ROUNDING_SECONDS = 300
MIN_KEY_CHARS = 16
# The query parameters a signed link carries.
EXPIRES = "expires"
SIGNATURE = "signature"


def _digest(key: str, tenant: str, path: str, expires: int) -> str:
    message = f"{tenant}\n{path}\n{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LinkSigner:
    """Signs with `keys[0]`, accepts any of `keys`."""

    keys: tuple[str, ...]
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS

    def __post_init__(self) -> None:
        if not self.keys or any(len(key) < MIN_KEY_CHARS for key in self.keys):
            raise ValueError(
                f"{KEYS_VARIABLE} must hold one or more keys of at least {MIN_KEY_CHARS} "
                "characters, separated by commas (the first signs, all are accepted)"
            )
        if self.lifetime_seconds < 1:
            raise ValueError(f"{LIFETIME_VARIABLE} must be at least 1 second")

    @classmethod
    def read(cls, env: Env) -> LinkSigner:
        """From LINK_SIGNING_KEYS and LINK_LIFETIME_SECONDS (a service's settings call this);
        problems are recorded on `env`, and a placeholder stands in until it refuses them."""
        raw = env.text(KEYS_VARIABLE, "")
        keys = tuple(key.strip() for key in raw.split(",") if key.strip())
        lifetime = env.integer(LIFETIME_VARIABLE, DEFAULT_LIFETIME_SECONDS, minimum=1)
        if not keys or any(len(key) < MIN_KEY_CHARS for key in keys):
            env.problem(
                KEYS_VARIABLE,
                f"must hold one or more keys of at least {MIN_KEY_CHARS} characters, "
                "separated by commas (the first signs, all are accepted)",
            )
            return cls.ephemeral()
        return cls(keys, lifetime)

    @classmethod
    def ephemeral(cls) -> LinkSigner:
        """A signer with a random key, for code that builds settings without the environment
        (tests); links it signs die with the process."""
        return cls((secrets.token_urlsafe(32),))

    def expiry(self, now: float | None = None) -> int:
        """When a link signed now expires: at least `lifetime_seconds` from now."""
        step = min(MAX_ROUNDING_SECONDS, self.lifetime_seconds)
        earliest = (time.time() if now is None else now) + self.lifetime_seconds
        return math.ceil(earliest / step) * step

    def sign(self, tenant: str, path: str, now: float | None = None) -> str:
        """`path` with its expiry and signature appended as a query."""
        expires = self.expiry(now)
        query = urlencode(
            {EXPIRES: expires, SIGNATURE: _digest(self.keys[0], tenant, path, expires)}
        )
        return f"{path}?{query}"

    def verify(
        self,
        tenants: Iterable[str],
        path: str,
        expires: str,
        signature: str,
        now: float | None = None,
    ) -> str:
        """The tenant whose link this is; LINK_INVALID or LINK_EXPIRED otherwise. The
        signature is checked first, so an altered expiry is invalid rather than expired."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise _invalid(f"its '{EXPIRES}' is not a Unix time")
        stamp = int(expires)
        owner = next(
            (
                tenant
                for tenant in sorted(set(tenants))
                for key in self.keys
                if hmac.compare_digest(_digest(key, tenant, path, stamp), signature.lower())
            ),
            None,
        )
        if owner is None:
            raise _invalid("its signature does not match (it was altered or its key retired)")
        if stamp < (time.time() if now is None else now):
            at = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise MeshError(
                Reason.LINK_EXPIRED,
                f"This download link expired at {at}; fetch the job again for a fresh link, "
                "or send the API key.",
                expiredAt=at,
            )
        return owner


def _invalid(why: str) -> MeshError:
    return MeshError(
        Reason.LINK_INVALID,
        f"This download link is not valid: {why}. Fetch the job again for a fresh link, or "
        "send the API key.",
    )


@dataclass(frozen=True)
class DownloadLinks:
    """Where clients reach the gateway, and the signer of the links rendered for them."""

    base_url: str
    signer: LinkSigner

    def url(self, tenant: str, path: str) -> str:
        return self.base_url.rstrip("/") + self.signer.sign(tenant, path)
