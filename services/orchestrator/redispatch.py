"""Jobs whose record and dispatch disagree, brought back together.

A job's record is written before its tasks are published and marked `undispatched` until all
of them went out. An orchestrator that dies in between (or loses NATS) leaves a job nobody
would ever work on: it would sit at `processing` forever and count against its tenant's
active jobs. Every replica therefore looks, at start and then every `interval`, for jobs still
marked some time after their creation, and dispatches their files that have not started;
JetStream drops a task that did go out (`Nats-Msg-Id`), which is why the wait stays well inside
the duplicate window. (The mark may also be held for a moment after the publishes, to ride on
the job's next write: `JobStore.mark_dispatched`; DISPATCH_MARK_SECONDS stays under half of
the wait.) A retry of the request with the same Idempotency-Key completes the
dispatch at once (`JobCreator._existing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mesh.errors import MeshError, Reason
from services.orchestrator import state
from services.orchestrator.index import JobIndex
from services.orchestrator.jobs import JobCreator
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)


async def redispatch_due(
    creator: JobCreator, store: JobStore, index: JobIndex, older_than: float
) -> int:
    """Dispatches every job still undispatched `older_than` seconds after its creation;
    returns how many."""
    done = 0
    cutoff = time.time_ns() - int(older_than * 1e9)
    for tenant, job_id in index.undispatched(cutoff):
        try:
            record, _ = await store.get(tenant, job_id)
        except MeshError as error:
            if error.reason is Reason.NOT_FOUND:
                continue
            raise
        if not record.undispatched or state.is_terminal(record.job):
            continue
        log.warning("dispatching a job whose dispatch was interrupted", extra={"job": job_id})
        await creator.dispatch(record)
        done += 1
    return done


async def redispatch_forever(
    creator: JobCreator,
    store: JobStore,
    index: JobIndex,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Runs `redispatch_due` now and every `interval` seconds until `stop`; a job counts as
    interrupted once it is `interval` seconds old."""
    while not stop.is_set():
        try:
            await redispatch_due(creator, store, index, interval)
        except Exception as exc:  # NATS away: the next round tries again
            log.warning("redispatch round failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
