"""Job watches (WatchJob: the events stream, the sync wait) served from one shared watch.

Each orchestrator replica follows the jobs bucket's stream with one ordered consumer from the
moment it starts (new revisions only) and hands every revision to the calls watching that job,
in process. A call registers first and reads the job's current record second, so it sees the
current state at once however late it joins, and then every newer revision; older ones
arriving late are skipped by revision. Records of jobs nobody watches are not even decoded.

A watcher that does not keep up holds only its `keep` newest revisions (each is a whole
record, so dropping older ones loses intermediate progress, never the end); it never holds up
the shared watch or the other watchers.

The shared watch is re-created, resuming after the last stream sequence it delivered, when the
NATS connection comes back (`reconnected`), when its consumer is found gone (checked every
`check_seconds`), or when creating it failed. What changed meanwhile is then delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from mesh.bus import streams
from mesh.state.v1 import state_pb2
from services.orchestrator.store import JobStore

log = logging.getLogger(__name__)

# Revisions a watcher holds that it has not taken yet; past it the oldest are dropped.
KEEP = 16
# How often the shared watch's consumer is checked for, and how long to wait before trying
# again when re-creating it failed.
CHECK_SECONDS = 5.0
RETRY_SECONDS = 1.0
# The server removes the consumer this long after its subscriber is gone (a replica killed).
LINGER_SECONDS = 30.0


class _Watcher:
    def __init__(self, keep: int) -> None:
        self.revisions: deque[tuple[int, state_pb2.JobRecord]] = deque(maxlen=keep)
        self.ready = asyncio.Event()

    def offer(self, revision: int, record: state_pb2.JobRecord) -> None:
        self.revisions.append((revision, record))
        self.ready.set()


class JobWatches:
    def __init__(
        self,
        js: JetStreamContext,
        store: JobStore,
        *,
        keep: int = KEEP,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._js = js
        self._store = store
        self._keep = keep
        self._check_seconds = check_seconds
        self._stream = f"KV_{streams.JOBS_BUCKET}"
        self._prefix = f"$KV.{streams.JOBS_BUCKET}."
        self._watchers: dict[str, set[_Watcher]] = {}
        self._last_sequence = 0
        self._renew = asyncio.Event()
        self._stopping = False
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.subscriptions = 0  # how many times the shared watch was created (tests, logs)

    async def start(self) -> None:
        """Starts the shared watch and waits until it is in place."""
        self._task = asyncio.create_task(self._follow())
        await self._started.wait()

    async def stop(self) -> None:
        # The flag as well as the cancel: Python 3.11's asyncio.timeout can swallow a cancel
        # that lands as its own deadline passes, and the loop must end all the same.
        self._stopping = True
        self._renew.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reconnected(self) -> None:
        """The NATS connection is back: messages pushed meanwhile may be lost, start again."""
        self._renew.set()

    @property
    def watching(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    async def watch(self, tenant: str, job_id: str) -> AsyncGenerator[state_pb2.JobRecord, None]:
        """Yields the record now and after every change (NOT_FOUND for no such job)."""
        key = streams.job_key(tenant, job_id)
        watcher = _Watcher(self._keep)
        self._watchers.setdefault(key, set()).add(watcher)
        try:
            record, seen = await self._store.get(tenant, job_id)
            yield record
            while True:
                await watcher.ready.wait()
                watcher.ready.clear()
                while watcher.revisions:
                    revision, record = watcher.revisions.popleft()
                    if revision > seen:
                        seen = revision
                        yield record
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[key]

    async def _deliver(self, msg: Msg) -> None:
        metadata = msg.metadata
        self._last_sequence = max(self._last_sequence, metadata.sequence.stream)
        watchers = self._watchers.get(msg.subject[len(self._prefix) :])
        if not watchers:
            return
        operation = msg.headers.get(KV_OP) if msg.headers else None
        if operation in (KV_DEL, KV_PURGE) or not msg.data:
            return  # a removed job: its watchers wait, as a watch of the key would
        record = state_pb2.JobRecord.FromString(msg.data)
        for watcher in watchers:
            watcher.offer(metadata.sequence.stream, record)

    async def _subscribe(self) -> nats.js.JetStreamContext.PushSubscription:
        if self._last_sequence:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._last_sequence + 1,
            )
        else:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW)
        sub = await self._js.subscribe(
            f"{self._prefix}>",
            stream=self._stream,
            cb=self._deliver,
            config=config,
            ordered_consumer=True,
            inactive_threshold=LINGER_SECONDS,
        )
        self.subscriptions += 1
        return sub

    async def _alive(self, sub: nats.js.JetStreamContext.PushSubscription) -> bool:
        try:
            await sub.consumer_info()
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, TimeoutError):
            return True  # the connection is down: its return triggers `reconnected`
        return True

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                self._renew.clear()
                sub = await self._subscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("shared job watch could not be created, retrying: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._started.set()
            try:
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._check_seconds):
                            await self._renew.wait()
                    if self._stopping:
                        break
                    if self._renew.is_set():
                        log.info("nats reconnected: re-creating the shared job watch")
                        break
                    if not await self._alive(sub):
                        log.warning("shared job watch lost its consumer: re-creating it")
                        break
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
