"""One delivery attempt: signed POST, the retry schedule with jitter, the guard at send time."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mesh.jobs.v1 import jobs_pb2
from services.orchestrator import callbacks, delivery, signing, urlguard
from tests.mesh.http_receiver import Answer, Received, Receiver
from tests.orchestrator.resolver import replace_resolver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def settings(allow: str = "127.0.0.1") -> callbacks.CallbackSettings:
    return callbacks.CallbackSettings(
        retry_delays=(5.0, 25.0),
        timeout_seconds=2.0,
        public_base_url="https://convert.example",
        allow=urlguard.Allowlist.parse(allow),
    )


def event() -> callbacks.Event:
    job = jobs_pb2.Job(job_id="job-9", tenant="acme", status=jobs_pb2.JOB_STATUS_COMPLETED)
    return callbacks.Event("acme", "job-9", callbacks.COMPLETED, "evt_fixed", int(time.time()), job)


def test_retry_delays_follow_the_schedule_within_jitter() -> None:
    rng = random.Random(7)
    conf = settings()
    seconds = [[delivery.retry_delay(n, conf, rng) for n in (1, 2, 3)] for _ in range(200)]
    firsts = [s[0] for s in seconds if s[0] is not None]
    seconds_ = [s[1] for s in seconds if s[1] is not None]
    assert all(s[2] is None for s in seconds)
    assert min(firsts) >= 4.0 and max(firsts) <= 6.0
    assert min(seconds_) >= 20.0 and max(seconds_) <= 30.0
    assert max(firsts) - min(firsts) > 1.0  # jittered, not constant


async def test_attempt_posts_a_signed_envelope(receiver: Receiver) -> None:
    outcome = await delivery.attempt(event(), receiver.url("/signed"), "whsec", settings())
    assert outcome == delivery.Attempt(True, 200, "")
    seen = receiver.at("/signed")[-1]
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["convertly-event"] == callbacks.COMPLETED
    stamp = int(seen.headers["convertly-timestamp"])
    assert signing.verify("whsec", seen.headers["convertly-signature"], seen.body, now=stamp)
    assert seen.headers["convertly-signature"].startswith(f"t={stamp},v1=")
    body = json.loads(seen.body)
    assert (body["id"], body["data"]["jobId"]) == ("evt_fixed", "job-9")


async def test_without_a_secret_the_callback_is_unsigned(receiver: Receiver) -> None:
    outcome = await delivery.attempt(event(), receiver.url("/unsigned"), "", settings())
    assert outcome.ok
    assert "convertly-signature" not in receiver.at("/unsigned")[-1].headers


async def test_a_non_2xx_answer_is_a_failed_attempt(receiver: Receiver) -> None:
    async def broken(_: Received) -> Answer:
        return 500, {}, b"down"

    receiver.routes["/broken"] = broken
    outcome = await delivery.attempt(event(), receiver.url("/broken"), "s", settings())
    assert outcome == delivery.Attempt(False, 500, "HTTP 500")


async def test_the_guard_is_applied_again_at_delivery(receiver: Receiver) -> None:
    before = len(receiver.requests)
    outcome = await delivery.attempt(event(), receiver.url("/never"), "s", settings(allow=""))
    assert not outcome.ok and outcome.http_status == 0
    assert "loopback" in outcome.error
    assert len(receiver.requests) == before


async def test_a_redirect_the_guard_refuses_is_final_a_failed_answer_is_retried(
    receiver: Receiver,
) -> None:
    async def elsewhere(_: Received) -> Answer:
        return 302, {"location": "http://10.1.2.3/hook"}, b""

    async def broken(_: Received) -> Answer:
        return 503, {}, b"down"

    receiver.routes["/elsewhere"] = elsewhere
    receiver.routes["/down"] = broken
    conf = settings()
    refused = await delivery.attempt(event(), receiver.url("/elsewhere"), "s", conf)
    failed = await delivery.attempt(event(), receiver.url("/down"), "s", conf)
    assert not refused.ok and refused.final and refused.http_status == 0
    assert not failed.ok and not failed.final
    rng = random.Random(1)
    assert delivery.next_delay(refused, 1, conf, rng) is None
    assert delivery.next_delay(failed, 1, conf, rng) is not None
    assert delivery.next_delay(failed, conf.attempts, conf, rng) is None


@pytest.mark.parametrize("answer", ["no such name", "no address"])
async def test_a_name_that_does_not_resolve_is_retried_not_final(
    monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    # Whatever the machine's resolver does with the name (CI's answers NXDOMAIN at once, a
    # network namespace has none), the guard hears a definite "no" here: the attempt fails,
    # is not final, and the schedule offers another one.
    def lookup(host: str, port: int) -> list[Any]:
        if answer == "no address":
            return []
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    asked = replace_resolver(monkeypatch, lookup)
    conf = settings()
    outcome = await delivery.attempt(event(), "http://hooks.gone.example/cb", "s", conf)
    assert asked == ["hooks.gone.example"]
    assert not outcome.ok and not outcome.final and outcome.http_status == 0
    assert "does not resolve" in outcome.error
    assert delivery.next_delay(outcome, 1, conf, random.Random(1)) is not None
    assert delivery.next_delay(outcome, conf.attempts, conf, random.Random(1)) is None
