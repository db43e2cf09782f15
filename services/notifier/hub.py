"""Numbering, durability and fan-out of run events (plain asyncio, no gRPC).

One writer task takes publish requests from a queue, drains whatever else is
waiting (so concurrent publishers share one storage round trip), assigns each
event the next sequence of its run, appends the batch to the durable log, and
only then hands the events to the subscribers whose filter matches.

A stream registers its subscriber *before* it replays history from the log,
and drops live events it already replayed (by position): no gap and no
duplicate at the seam. Each subscriber has a bounded queue; a subscriber that
falls too far behind is dropped and its stream ends with RESOURCE_EXHAUSTED and
the position to resume from, so it never slows the others. A stream sends
its whole backlog in one message: under load, the cost per message (which
dominates a gRPC server's fan-out) is shared by many events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from automl.common import errors
from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2, event_pb2
from services.notifier.log import StorageLog

log = logging.getLogger("automl.notifier")
MAX_BATCH = 1000  # events per Publish, and per append to the log
MESSAGE_EVENTS = 256  # events per stream message: far below gRPC's 4 MiB message limit


@dataclass(frozen=True)
class Filter:
    """Which events a subscriber receives: one run, one experiment, or all of a tenant."""

    tenant: str
    run: str = ""  # "runs/{id}"
    experiment: str = ""  # "experiments/{id}"
    types: frozenset[int] = frozenset()

    def matches(self, tenant: str, event: event_pb2.Event) -> bool:
        return (
            tenant == self.tenant
            and (not self.run or event.run == self.run)
            and (not self.experiment or event.experiment == self.experiment)
            and (not self.types or event.type in self.types)
        )


@dataclass(frozen=True)
class Position:
    """Where a stream resumes: after a run's sequence, or after a global sequence."""

    sequence: int | None = None
    global_sequence: int | None = None


@dataclass(eq=False)
class Subscriber:
    """One open stream's mailbox: events not yet sent, and why to wake up."""

    filter: Filter
    capacity: int
    tag: str = ""  # the subscription a token stream serves, to end it on revocation
    pending: list[event_pb2.Event] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closed_reason: errors.AutoMLError | None = None
    heartbeat_due: bool = False
    last_sent: float = field(default_factory=time.monotonic)

    def offer(self, event: event_pb2.Event) -> bool:
        """Queue `event`; False when the mailbox is full (the subscriber is dropped)."""
        if len(self.pending) >= self.capacity:
            self.pending.clear()  # the client re-reads these from the log when it resumes
            self.overflowed = True
            self.wake.set()
            return False
        self.pending.append(event)
        self.wake.set()
        return True

    def close(self, reason: errors.AutoMLError) -> None:
        self.closed_reason = reason
        self.wake.set()

    def take(self, limit: int) -> list[event_pb2.Event]:
        taken = self.pending[:limit]
        del self.pending[:limit]
        return taken


@dataclass
class _Request:
    tenant: str
    events: list[event_pb2.Event]
    done: asyncio.Future[list[event_pb2.Event]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def event_type(event: event_pb2.Event) -> int:
    payload = event.WhichOneof("payload")
    return event_pb2.EventType.Value(f"EVENT_TYPE_{payload.upper()}") if payload else 0


class Hub:
    def __init__(
        self, log_store: StorageLog, queue_size: int, heartbeat_seconds: float, messages_per_second: int = 10_000
    ) -> None:
        self.log = log_store
        self.queue_size = queue_size
        self.heartbeat_seconds = heartbeat_seconds
        self.messages_per_second = messages_per_second
        self.inbox: asyncio.Queue[_Request] = asyncio.Queue()
        self.subscribers: set[Subscriber] = set()
        self.sequences: dict[tuple[str, str], int] = {}  # (tenant, run) -> last sequence assigned
        self.listeners: list[Callable[[str, list[event_pb2.Event]], None]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._write_forever(), name="event writer"),
            asyncio.create_task(self._beat_forever(), name="heartbeats"),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscriber in list(self.subscribers):
            subscriber.close(errors.Unavailable("the notifier is shutting down: resume from your last event"))

    # ------------------------------------------------------------- publishing

    async def publish(self, tenant: str, events: list[event_pb2.Event]) -> list[event_pb2.Event]:
        """Number, store and deliver `events`; returns them as stored."""
        if not 1 <= len(events) <= MAX_BATCH:
            raise InvalidArgument.field("events", f"send 1 to {MAX_BATCH} events, not {len(events)}")
        checked = [_checked(i, event) for i, event in enumerate(events)]
        request = _Request(tenant, checked)
        await self.inbox.put(request)
        return await request.done

    async def _write_forever(self) -> None:
        while True:
            batch = [await self.inbox.get()]
            size = len(batch[0].events)
            while not self.inbox.empty() and size < MAX_BATCH:
                batch.append(self.inbox.get_nowait())
                size += len(batch[-1].events)
            by_tenant: dict[str, list[_Request]] = defaultdict(list)
            for request in batch:
                by_tenant[request.tenant].append(request)
            for tenant, requests in by_tenant.items():
                await self._write(tenant, requests)

    async def _write(self, tenant: str, requests: list[_Request]) -> None:
        pending = [r for r in requests if not r.done.cancelled()]
        try:
            events = []
            for request in pending:
                for event in request.events:
                    event.sequence = await self._next_sequence(tenant, event.run)
                    events.append(event)
            stored = await self._append(tenant, events)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting publisher
            for key in [k for k in self.sequences if k[0] == tenant]:
                del self.sequences[key]  # re-read from the log next time
            for request in pending:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        self._deliver(tenant, stored)
        start = 0
        for request in pending:
            end = start + len(request.events)
            if not request.done.done():
                request.done.set_result(stored[start:end])
            start = end

    async def _append(self, tenant: str, events: list[event_pb2.Event]) -> list[event_pb2.Event]:
        stored: list[event_pb2.Event] = []
        for start in range(0, len(events), MAX_BATCH):
            stored += await self.log.append(tenant, events[start : start + MAX_BATCH])
        return stored

    async def _next_sequence(self, tenant: str, run: str) -> int:
        key = (tenant, run)
        if key not in self.sequences:  # first event of this run since start: continue the log
            try:
                self.sequences[key] = await self.log.last_sequence(tenant, run)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    raise errors.NotFound(f"{run} does not exist") from exc
                raise  # storage unreachable: UNAVAILABLE, which the publisher retries
        self.sequences[key] += 1
        return self.sequences[key]

    def _deliver(self, tenant: str, events: list[event_pb2.Event]) -> None:
        for subscriber in list(self.subscribers):
            for event in events:
                if subscriber.filter.matches(tenant, event) and not subscriber.offer(event):
                    self.subscribers.discard(subscriber)
                    break
        for listener in self.listeners:
            listener(tenant, events)

    # -------------------------------------------------------------- streaming

    async def stream(
        self,
        flt: Filter,
        after: Position | None,
        *,
        end_with_run: bool = False,
        tag: str = "",
    ) -> AsyncIterator[list[event_pb2.Event] | common_pb2.Heartbeat]:
        """Replay what matches `flt` after `after` (None: nothing), then go on
        live; yields batches of events (each one stream message) and heartbeats."""
        subscriber = Subscriber(flt, self.queue_size, tag)
        self.subscribers.add(subscriber)  # before the replay: nothing published from now on is missed
        last_global = (after.global_sequence or 0) if after else 0
        last_sequence = (after.sequence or 0) if after else 0

        def unseen(events: list[event_pb2.Event]) -> list[event_pb2.Event]:
            """Drop what was sent already (the seam), and stop after the run's end."""
            nonlocal last_global, last_sequence
            fresh = []
            for event in events:
                if event.global_sequence <= last_global or (flt.run and event.sequence <= last_sequence):
                    continue
                last_global, last_sequence = event.global_sequence, event.sequence
                fresh.append(event)
                if end_with_run and event.type == event_pb2.EVENT_TYPE_RUN_FINISHED:
                    break
            return fresh

        def finished(batch: list[event_pb2.Event]) -> bool:
            return end_with_run and bool(batch) and batch[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED

        try:
            if after is not None:
                async for page in self._replay(flt, after):
                    if batch := unseen(page):
                        yield batch
                        if finished(batch):
                            return
            while True:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                if subscriber.closed_reason is not None:
                    raise subscriber.closed_reason
                if subscriber.overflowed:
                    where = f"after_sequence={last_sequence}" if flt.run else f"after_global_sequence={last_global}"
                    raise errors.ResourceExhausted(
                        f"this stream fell more than {self.queue_size} events behind and was ended: resume with {where}"
                    )
                sent = False
                if subscriber.pending:
                    await self._pace(subscriber)
                while subscriber.pending:
                    if batch := unseen(subscriber.take(MESSAGE_EVENTS)):
                        yield batch
                        sent = True
                        if finished(batch):
                            return
                if subscriber.heartbeat_due and not sent:
                    yield common_pb2.Heartbeat(last_sequence=last_sequence if flt.run else last_global)
                    sent = True
                subscriber.heartbeat_due = False
                if sent:
                    subscriber.last_sent = time.monotonic()
        finally:
            self.subscribers.discard(subscriber)

    async def _pace(self, subscriber: Subscriber) -> None:
        """Share the message budget among the streams: a stream sends at most one
        message per its share of a second. A gRPC message costs the event loop
        tens of microseconds whatever it holds; without a budget, a thousand
        streams sending one event each would saturate the loop, and every
        Publish would wait behind them. With it, the events that arrive within a
        share go out together; a stream that was quiet longer sends at once."""
        share = len(self.subscribers) / self.messages_per_second
        wait = subscriber.last_sent + share - time.monotonic()
        if wait >= 0.002:  # below that, a timer costs more than it saves
            await asyncio.sleep(wait)

    async def _beat_forever(self) -> None:
        """Wake the streams that sent nothing for a heartbeat period: one timer
        for all of them, rather than one per stream and message."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds / 2)
            idle_since = time.monotonic() - self.heartbeat_seconds
            for subscriber in self.subscribers:
                if subscriber.last_sent <= idle_since:
                    subscriber.heartbeat_due = True
                    subscriber.wake.set()

    async def _replay(self, flt: Filter, after: Position) -> AsyncIterator[list[event_pb2.Event]]:
        cursor_global = after.global_sequence or 0
        cursor_sequence = (after.sequence or 0) if flt.run else 0
        first = True
        while True:
            page = await self.log.read(
                flt.tenant,
                run=flt.run,
                experiment=flt.experiment,
                after_global_sequence=cursor_global,
                after_sequence=cursor_sequence,
                event_types=sorted(flt.types),
            )
            if first and after.global_sequence and page.first_kept > after.global_sequence + 1:
                raise errors.OutOfRange(
                    f"events after global_sequence {after.global_sequence} are no longer kept "
                    f"(the log starts at {page.first_kept}): re-read the current state, then subscribe without "
                    "after_global_sequence"
                )
            first = False
            if page.events:
                cursor_global = page.events[-1].global_sequence
            for start in range(0, len(page.events), MESSAGE_EVENTS):
                yield page.events[start : start + MESSAGE_EVENTS]
            if not page.has_more:
                return

    def close_matching(self, predicate: Callable[[Subscriber], bool], reason: errors.AutoMLError) -> None:
        for subscriber in [s for s in self.subscribers if predicate(s)]:
            self.subscribers.discard(subscriber)
            subscriber.close(reason)


def _checked(i: int, event: event_pb2.Event) -> event_pb2.Event:
    if not event.run.startswith("runs/"):
        raise InvalidArgument.field(f"events[{i}].run", "required: the run, like runs/abc123")
    if not event.experiment.startswith("experiments/"):
        raise InvalidArgument.field(f"events[{i}].experiment", "required: the experiment, like experiments/abc123")
    if event.WhichOneof("payload") is None:
        raise InvalidArgument.field(f"events[{i}].payload", "required: what happened")
    copy = event_pb2.Event()
    copy.CopyFrom(event)
    copy.type = event_type(event)
    copy.ClearField("global_sequence")
    if not copy.HasField("create_time"):
        copy.create_time.FromDatetime(dt.datetime.now(dt.UTC))
    return copy
