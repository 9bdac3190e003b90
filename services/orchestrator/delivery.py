"""Sends queued callback events: one durable pull consumer shared by all replicas.

Each delivery of a CALLBACKS message is one attempt (JetStream counts them). A 2xx answer acks
it; anything else naks it with the next retry delay (plus jitter), until the last attempt, after
which it is acked and marked failed. A URL the guard refuses (itself, or where it redirects) is
failed at once: it would be refused again. A host name that does not resolve is not refused: it
is a failed attempt, retried on the schedule (the name may exist by then). Every attempt is
appended to the job's `callbacks`.
The URL is checked by the guard again before every attempt: what it resolves to may have
changed since the job was created. Attempts run concurrently, so one slow receiver holds only
its own slot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from mesh import telemetry, tracing
from mesh.bus import streams
from mesh.bus.consume import consume
from mesh.errors import MeshError, Reason
from mesh.jobs.v1 import jobs_pb2
from mesh.state.v1 import state_pb2
from services.orchestrator import outbound, signing, state, urlguard
from services.orchestrator.callbacks import CallbackSettings, Event
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)

CONSUMER = "callbacks"
USER_AGENT = "convertmesh-callbacks/1"
JITTER = 0.2
# Crash redeliveries beyond the planned attempts end as "failed" instead of looping forever.
_SPARE_DELIVERIES = 5


@dataclass(frozen=True)
class Attempt:
    ok: bool
    http_status: int
    error: str
    # No later attempt can do better: the URL, or where it redirects, is refused by the guard.
    final: bool = False


def retry_delay(attempt: int, settings: CallbackSettings, rng: random.Random) -> float | None:
    """Seconds before the attempt after `attempt` (1-based), or None when it was the last."""
    if attempt > len(settings.retry_delays):
        return None
    return settings.retry_delays[attempt - 1] * rng.uniform(1 - JITTER, 1 + JITTER)


def request_headers(event: Event, secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Convertly-Event": event.type,
        "Convertly-Timestamp": str(timestamp),
    }
    if secret:
        headers[signing.HEADER] = signing.header_value(secret, timestamp, body)
    return headers


async def attempt(event: Event, url: str, secret: str, settings: CallbackSettings) -> Attempt:
    body = event.envelope(settings.links)
    headers = request_headers(event, secret, body, int(time.time()))
    try:
        target = await urlguard.check_async(url, settings.allow, "callbackUrl")
        response = await outbound.send(
            outbound.Request("POST", headers, body),
            target,
            allow=settings.allow,
            seconds=settings.timeout_seconds,
            field="callbackUrl",
        )
    except MeshError as error:
        # INVALID_FIELD: the guard refused the URL or a redirect; the rest (no answer in
        # time, a broken connection, a name that does not resolve yet) may go better later.
        final = error.reason is Reason.INVALID_FIELD and not isinstance(
            error, urlguard.UnresolvedHostError
        )
        return Attempt(False, 0, error.message, final=final)
    if 200 <= response.status < 300:
        return Attempt(True, response.status, "")
    return Attempt(False, response.status, f"HTTP {response.status}")


def next_delay(
    outcome: Attempt, number: int, settings: CallbackSettings, rng: random.Random
) -> float | None:
    """Seconds before attempt `number + 1`, or None when there is none: delivered, refused
    for good, or the last attempt."""
    if outcome.ok or outcome.final or number >= settings.attempts:
        return None
    return retry_delay(number, settings, rng)


def _recorder(
    event: Event, number: int, status: str, outcome: Attempt
) -> Callable[[state_pb2.JobRecord], bool]:
    delivery = jobs_pb2.CallbackDelivery(
        type=event.type,
        attempt=number,
        status=status,
        http_status=outcome.http_status,
        at=state.now(),
        error=outcome.error,
        event_id=event.event_id,
    )

    def append(record: state_pb2.JobRecord) -> bool:
        # A redelivery after a crash must not record the same attempt twice.
        for seen in record.job.callbacks:
            if seen.event_id == event.event_id and seen.attempt == number:
                return False
        record.job.callbacks.append(delivery)
        return True

    return append


class Deliverer:
    def __init__(self, js: JetStreamContext, store: JobStore, settings: CallbackSettings) -> None:
        self._js = js
        self._store = store
        self._settings = settings
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        await consume(
            self._js,
            subject=streams.CALLBACK_SUBJECT,
            stream=streams.CALLBACKS_STREAM,
            config=ConsumerConfig(
                durable_name=CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                # Longer than one attempt can take: resolution plus the whole-request timeout.
                ack_wait=settings.timeout_seconds + urlguard.RESOLVE_TIMEOUT_SECONDS + 30,
                max_deliver=settings.attempts + _SPARE_DELIVERIES,
                max_ack_pending=4 * settings.concurrency,
            ),
            handle=self._handle,
            stop=stop,
            concurrency=settings.concurrency,
            # Unfinished attempts are nak'ed: JetStream hands them to a live replica.
            drain_seconds=settings.timeout_seconds,
            operation="deliver callback",
        )

    async def _handle(self, message: Msg) -> None:
        try:
            event = Event.from_message(message.headers or {}, message.data)
        except Exception:
            log.error("undecodable callback event dropped")
            await message.term()
            return
        try:
            record, _ = await self._store.get(event.tenant, event.job_id)
        except MeshError as error:
            if error.reason is Reason.NOT_FOUND:
                await message.ack()  # the job expired: nobody to tell, nowhere to record
            else:
                await message.nak(delay=1.0)
            return
        if not record.callback_url:
            await message.ack()
            return
        number = message.metadata.num_delivered or 1
        outcome = await attempt(event, record.callback_url, record.callback_secret, self._settings)
        delay = next_delay(outcome, number, self._settings, self._rng)
        status = "delivered" if outcome.ok else ("retrying" if delay is not None else "failed")
        telemetry.CALLBACK_ATTEMPTS.labels(event.type, status).inc()
        tracing.annotate(
            {
                "convertmesh.job_id": event.job_id,
                "convertmesh.tenant": event.tenant,
                "convertmesh.event": event.type,
                "convertmesh.attempt": number,
                "convertmesh.outcome": status,
                "http.response.status_code": outcome.http_status,
            }
        )
        append = _recorder(event, number, status, outcome)
        try:
            await self._store.mutate(event.tenant, event.job_id, append)
        except Exception as exc:
            log.warning("recording a callback attempt failed: %s", exc, extra={"job": event.job_id})
        log.info(
            "callback attempt",
            extra={"job": event.job_id, "event": event.type, "attempt": number, "status": status},
        )
        if delay is None:
            await message.ack()
        else:
            await message.nak(delay=delay)
