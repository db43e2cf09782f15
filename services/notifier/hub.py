"""Numbering, durability and fan-out of run events (plain asyncio, no gRPC).

One writer task takes publish requests from a queue, drains whatever else is
waiting (so concurrent publishers share one storage round trip), assigns each
event the next sequence of its run, appends the batch to the durable log, and
only then hands the events on.

Fan-out goes through topics: one per distinct filter, holding the recent
events that match it. An event is matched once per topic, not once per
subscriber, and each subscriber keeps only its position in its topic.
Streams send at most one message per period (their share of the message
budget), with the events that came meanwhile: under load, the cost per
message (which dominates a gRPC server's fan-out) is shared by many events.
The subscribers are spread over TURNS turns that take their go one after the
other, so the messages are spread over the period rather than sent in one
burst that every event published meanwhile would wait behind; streams of a
turn at the same position send the same batch, built once. When quiet, an
event goes out as soon as it arrives.

A stream registers its subscriber *before* it replays history from the log,
and drops live events it already replayed (by position): no gap and no
duplicate at the seam. A subscriber that falls more than its capacity behind
its topic is dropped and its stream ends with RESOURCE_EXHAUSTED and the
position to resume from, so it never slows the others.
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
from typing import Any, cast

from automl.common import errors
from automl.common.errors import InvalidArgument
from automl.common.events import EVENT_ID_RULE, new_event_id, valid_event_id
from automl.v1 import common_pb2, event_pb2
from services.notifier.log import StorageLog

log = logging.getLogger("automl.notifier")
MAX_BATCH = 1000  # events per Publish, and per append to the log
MESSAGE_EVENTS = 256  # events per stream message: far below gRPC's 4 MiB message limit
TURNS = 20  # the streams take turns, this many per period
MIN_TICK_SECONDS = 0.002  # below that, a timer costs more than it saves


@dataclass(frozen=True)
class Filter:
    """Which events a subscriber receives: one run, one experiment, or all of a tenant."""

    tenant: str
    run: str = ""  # "runs/{id}"
    experiment: str = ""  # "experiments/{id}"
    types: frozenset[event_pb2.EventType] = frozenset()

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
class Batch:
    """Events that go out in one stream message. Streams at the same position
    of a topic get the same Batch: whoever turns it into a message first
    leaves it in `messages` for the others (one per message type)."""

    events: list[event_pb2.Event]
    messages: dict[type, Any] = field(default_factory=dict)


class Wake:
    """What asyncio.Event does for one waiter, without its per-call loop
    lookup (a getpid() system call in Python 3.11): thousands of streams wake
    many times a second."""

    __slots__ = ("_loop", "_set", "_waiter")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if not self._set:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


@dataclass(eq=False)
class Subscriber:
    """One open stream: its place in its topic, and why to wake up."""

    topic: Topic
    position: int  # in the topic: the next event to send
    turn: int  # which of the hub's turns wakes it
    tag: str = ""  # the subscription a token stream serves, to end it on revocation
    wake: Wake = field(default_factory=Wake)
    overflowed: bool = False
    closed_reason: errors.AutoMLError | None = None
    heartbeat_due: bool = False
    last_sent: float = field(default_factory=time.monotonic)

    def close(self, reason: errors.AutoMLError) -> None:
        self.closed_reason = reason
        self.wake.set()


@dataclass(eq=False)
class Topic:
    """The live events that match one filter, kept from the position of its
    slowest subscriber on."""

    filter: Filter
    events: list[event_pb2.Event] = field(default_factory=list)
    first: int = 0  # the position of events[0]
    subscribers: set[Subscriber] = field(default_factory=set)
    batches: dict[tuple[int, int], Batch] = field(default_factory=dict)  # since the last trim, by (start, end)

    @property
    def end(self) -> int:
        return self.first + len(self.events)

    def batch(self, position: int, end: int) -> Batch:
        """The next message's events from `position`, up to `end` at most."""
        end = min(end, position + MESSAGE_EVENTS)
        batch = self.batches.get((position, end))
        if batch is None:
            batch = self.batches[position, end] = Batch(self.events[position - self.first : end - self.first])
        return batch

    def trim(self) -> None:
        """Forget what every subscriber has sent, and the batches built since the last trim."""
        oldest = min((s.position for s in self.subscribers), default=self.end)
        del self.events[: oldest - self.first]
        self.first = oldest
        self.batches.clear()


@dataclass(eq=False)
class Turn:
    """Subscribers woken together. The turns take their go one after the
    other, so the streams' messages are spread over the period rather than
    sent in one burst that every event published meanwhile waits behind."""

    subscribers: set[Subscriber] = field(default_factory=set)
    woken: float = 0.0

    def wake_behind(self) -> bool:
        """Wake the subscribers that have events to send; False when none has."""
        woke = False
        for subscriber in self.subscribers:
            if subscriber.position < subscriber.topic.end:
                subscriber.wake.set()
                woke = True
        return woke


@dataclass
class _Request:
    tenant: str
    events: list[event_pb2.Event]
    done: asyncio.Future[list[event_pb2.Event]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def event_type(event: event_pb2.Event) -> event_pb2.EventType:
    payload = event.WhichOneof("payload")
    if not payload:
        return event_pb2.EVENT_TYPE_UNSPECIFIED
    return cast(event_pb2.EventType, event_pb2.EventType.Value(f"EVENT_TYPE_{payload.upper()}"))


class Hub:
    def __init__(
        self, log_store: StorageLog, queue_size: int, heartbeat_seconds: float, messages_per_second: int = 10_000
    ) -> None:
        self.log = log_store
        self.queue_size = queue_size
        self.heartbeat_seconds = heartbeat_seconds
        self.messages_per_second = messages_per_second
        self.inbox: asyncio.Queue[_Request] = asyncio.Queue()
        self.topics: dict[Filter, Topic] = {}
        self.subscribers: set[Subscriber] = set()
        self.sequences: dict[tuple[str, str], int] = {}  # (tenant, run) -> last sequence assigned
        self.listeners: list[Callable[[str, list[event_pb2.Event]], None]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.turns: list[Turn] = [Turn() for _ in range(TURNS)]
        self.next_turn = 0  # where the next subscriber goes: round robin
        self.ticker: asyncio.TimerHandle | asyncio.Handle | None = None
        self.last_news = 0.0
        self.last_trim = 0.0

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
        if self.ticker is not None:
            self.ticker.cancel()
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
        """Number, store and deliver the requests' events. An id seen earlier in
        the batch is stored once; an id the log holds already (a retried Publish)
        is not stored again: storage answers with the stored event, which goes
        back to the publisher but not to the streams, and the run's counter
        goes back by the number it was given."""
        pending = [r for r in requests if not r.done.cancelled()]
        try:
            events: list[event_pb2.Event] = []  # one per distinct id, in order
            slots: dict[str, int] = {}  # id -> its place in events
            given: dict[tuple[str, str], int] = {}  # (tenant, run) -> counter before this batch
            for request in pending:
                for event in request.events:
                    if event.id in slots:
                        continue
                    key = (tenant, event.run)
                    event.sequence = await self._next_sequence(tenant, event.run)
                    given.setdefault(key, event.sequence - 1)
                    slots[event.id] = len(events)
                    events.append(event)
            stored, repeated = await self._append(tenant, events)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting publisher
            for key in [k for k in self.sequences if k[0] == tenant]:
                del self.sequences[key]  # re-read from the log next time
            for request in pending:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        if any(repeated):
            appended: dict[tuple[str, str], int] = defaultdict(int)
            for event, again in zip(events, repeated, strict=True):
                if not again:
                    appended[tenant, event.run] += 1
            for key, before in given.items():  # storage numbered the new events without the repeated ones
                self.sequences[key] = before + appended[key]
        self._deliver(tenant, [e for e, again in zip(stored, repeated, strict=True) if not again])
        for request in pending:
            if not request.done.done():
                request.done.set_result([stored[slots[event.id]] for event in request.events])

    async def _append(self, tenant: str, events: list[event_pb2.Event]) -> tuple[list[event_pb2.Event], list[bool]]:
        """Append to the log; returns the events as stored, and which of them were stored before."""
        stored: list[event_pb2.Event] = []
        repeated: list[bool] = []
        for start in range(0, len(events), MAX_BATCH):
            reply = await self.log.append(tenant, events[start : start + MAX_BATCH])
            stored += reply.events
            repeated += reply.already_stored or [False] * len(reply.events)
        return stored, repeated

    async def _next_sequence(self, tenant: str, run: str) -> int:
        key = (tenant, run)
        if key not in self.sequences:  # first event of this run since start: continue the log
            try:
                self.sequences[key] = await self.log.last_sequence(tenant, run)
            except errors.NotFound as exc:  # storage away (Unavailable) goes on: the publisher retries that
                raise errors.NotFound(f"{run} does not exist") from exc
        self.sequences[key] += 1
        return self.sequences[key]

    def _deliver(self, tenant: str, events: list[event_pb2.Event]) -> None:
        news = False
        for topic in self.topics.values():
            matching = [e for e in events if topic.filter.matches(tenant, e)]
            if matching:
                topic.events += matching
                news = True
        if news:
            self.last_news = asyncio.get_running_loop().time()
            if self.ticker is None:  # quiet until now: no need to wait
                self.ticker = asyncio.get_running_loop().call_soon(self._tick)
        for listener in self.listeners:
            listener(tenant, events)

    def period(self) -> float:
        """How often a stream may send: its share of the message budget. A gRPC
        message costs the event loop tens of microseconds whatever it holds;
        without a budget, a thousand streams sending one event each would
        saturate the loop, and every Publish would wait behind them."""
        return len(self.subscribers) / self.messages_per_second

    def _tick(self) -> None:
        """Wake the turn whose time it is, and every turn that rested a whole
        period; tick again while events may be waiting."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        period = self.period()
        step = max(period / TURNS, MIN_TICK_SECONDS)
        if now - self.last_trim >= period:
            self.last_trim = now
            self._trim()
        current = int(now / step) % TURNS
        for index, turn in enumerate(self.turns):
            if (index == current or turn.woken <= now - period) and turn.wake_behind():
                turn.woken = now
        if now - self.last_news > period + step:  # every turn came since the last event
            self.ticker = None
        else:
            self.ticker = loop.call_at((int(now / step) + 1) * step, self._tick)

    def _trim(self) -> None:
        """Forget what every subscriber of a topic has sent; end those that fell too far behind."""
        for topic in list(self.topics.values()):
            for subscriber in list(topic.subscribers):
                if topic.end - subscriber.position > self.queue_size:
                    self._drop(subscriber)
                    subscriber.overflowed = True  # it re-reads what it missed from the log when it resumes
                    subscriber.wake.set()
            topic.trim()

    def _subscribe(self, flt: Filter, tag: str) -> Subscriber:
        topic = self.topics.get(flt)
        if topic is None:
            topic = self.topics[flt] = Topic(flt)
        subscriber = Subscriber(topic, topic.end, self.next_turn, tag)
        self.next_turn = (self.next_turn + 1) % TURNS
        topic.subscribers.add(subscriber)
        self.turns[subscriber.turn].subscribers.add(subscriber)
        self.subscribers.add(subscriber)
        return subscriber

    def _drop(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.turns[subscriber.turn].subscribers.discard(subscriber)
        topic = subscriber.topic
        topic.subscribers.discard(subscriber)
        if not topic.subscribers and self.topics.get(topic.filter) is topic:
            del self.topics[topic.filter]

    # -------------------------------------------------------------- streaming

    async def stream(
        self,
        flt: Filter,
        after: Position | None,
        *,
        end_with_run: bool = False,
        tag: str = "",
    ) -> AsyncIterator[Batch | common_pb2.Heartbeat]:
        """Replay what matches `flt` after `after` (None: nothing), then go on
        live; yields batches of events (each one stream message) and heartbeats."""
        subscriber = self._subscribe(flt, tag)  # before the replay: nothing published from now on is missed
        topic = subscriber.topic
        last_global = (after.global_sequence or 0) if after else 0
        last_sequence = (after.sequence or 0) if after else 0

        def unseen(batch: Batch) -> Batch | None:
            """Drop what was sent already (the seam), and stop after the run's end."""
            nonlocal last_global, last_sequence
            events = batch.events
            first, final = events[0], events[-1]
            if not (first.global_sequence > last_global and (not flt.run or first.sequence > last_sequence)):
                events = [
                    e for e in events if e.global_sequence > last_global and (not flt.run or e.sequence > last_sequence)
                ]
                if not events:
                    return None
                final = events[-1]
            if end_with_run:
                ends = [i for i, e in enumerate(events) if e.type == event_pb2.EVENT_TYPE_RUN_FINISHED]
                if ends:
                    events, final = events[: ends[0] + 1], events[ends[0]]
            last_global, last_sequence = final.global_sequence, final.sequence
            return batch if events is batch.events else Batch(events)

        def finished(batch: Batch) -> bool:
            return end_with_run and batch.events[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED

        def check() -> None:
            """Raise why the stream ends, if it does (its topic no longer keeps its events)."""
            if subscriber.closed_reason is not None:
                raise subscriber.closed_reason
            if subscriber.overflowed:
                where = f"after_sequence={last_sequence}" if flt.run else f"after_global_sequence={last_global}"
                raise errors.ResourceExhausted(
                    f"this stream fell more than {self.queue_size} events behind and was ended: resume with {where}"
                )

        try:
            if after is not None:
                async for page in self._replay(flt, after):
                    if batch := unseen(Batch(page)):
                        yield batch
                        if finished(batch):
                            return
            while True:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                check()
                sent = False
                end = topic.end  # what came later waits for the next turn: the budget holds
                while subscriber.position < end:
                    check()
                    batch = topic.batch(subscriber.position, end)
                    subscriber.position += len(batch.events)
                    if fresh := unseen(batch):
                        yield fresh
                        sent = True
                        if finished(fresh):
                            return
                if subscriber.heartbeat_due and not sent:
                    yield common_pb2.Heartbeat(last_sequence=last_sequence if flt.run else last_global)
                    sent = True
                subscriber.heartbeat_due = False
                if sent:
                    subscriber.last_sent = time.monotonic()
        finally:
            self._drop(subscriber)

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
            self._drop(subscriber)
            subscriber.close(reason)


def _checked(i: int, event: event_pb2.Event) -> event_pb2.Event:
    if not event.run.startswith("runs/"):
        raise InvalidArgument.field(f"events[{i}].run", "required: the run, like runs/abc123")
    if not event.experiment.startswith("experiments/"):
        raise InvalidArgument.field(f"events[{i}].experiment", "required: the experiment, like experiments/abc123")
    if event.WhichOneof("payload") is None:
        raise InvalidArgument.field(f"events[{i}].payload", "required: what happened")
    if event.id and not valid_event_id(event.id):
        raise InvalidArgument.field(f"events[{i}].id", EVENT_ID_RULE)
    copy = event_pb2.Event()
    copy.CopyFrom(event)
    copy.id = event.id or new_event_id()
    copy.type = event_type(event)
    copy.ClearField("global_sequence")
    if not copy.HasField("create_time"):
        copy.create_time.FromDatetime(dt.datetime.now(dt.UTC))
    return copy
