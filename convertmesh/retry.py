"""When to try a request again, and after how long; no I/O here, so the sync and async clients
share every decision.

- 429 and 503 are retried, on any method: the server refused before doing anything. Their
  `Retry-After` (seconds or an HTTP date) is honoured as given; without it, backoff.
- 502 and 504 are retried only where a repeat is harmless (an idempotent request).
- No other status is retried: a 4xx says the request itself is wrong, so sending it again
  cannot help.
- A connection that could not be opened is retried on any method (nothing was sent); one that
  broke mid-way only where a repeat is harmless.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_ANY = frozenset({429, 503})
RETRY_IDEMPOTENT = frozenset({502, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    waited: float = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, waited)


@dataclass(frozen=True)
class RetryNotice:
    """Told to an `on_retry` callback before each wait."""

    attempt: int  # the attempt that failed, from 1
    delay: float  # seconds until the next one
    reason: str  # "503 Service Unavailable", "connection refused", ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # first wait when the server names none; doubles each time
    max_backoff: float = 30.0
    # A Retry-After longer than this is not waited out: the error is raised at once.
    max_retry_after: float = 300.0

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)

    def after_status(
        self, attempt: int, status: int, retry_after: float | None, idempotent: bool
    ) -> float | None:
        """Seconds to wait before another try after an answer with `status`, or None."""
        if attempt >= self.attempts:
            return None
        if status not in RETRY_ANY and not (idempotent and status in RETRY_IDEMPOTENT):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self._backoff(attempt)

    def after_transport_error(self, attempt: int, sent: bool, idempotent: bool) -> float | None:
        """Seconds to wait after a failed connection, or None. `sent` is False when the
        connection was never opened, so the server saw nothing."""
        if attempt >= self.attempts or (sent and not idempotent):
            return None
        return self._backoff(attempt)


NO_RETRIES = RetryPolicy(attempts=1)
