"""WatchRun: a snapshot of the run, then its events live, until it ends.

The snapshot and the live feed meet at the run's last_sequence as read with
the snapshot: events after it come from the notifier's replay, so nothing
falls between the two and nothing is sent twice (list-then-watch).

One notifier stream per run per gateway process (issue 23): every WatchRun of
a run on this process reads the same StreamEvents, held by a `_Feed`. The
feed keeps the last `buffer` messages it received in a log that each watcher
reads at its own position; a message is built once and sent to every watcher
(no per-watcher copy, no per-watcher queue to fill). A slow watcher only
falls behind in the log (gRPC's flow control holds its writes): it never
holds back the others, nor the feed. A watcher that falls more than `buffer`
messages behind (the log dropped messages it had not read) is not cut off:
it goes on, from the last event it was sent, on a notifier stream of its own
(the notifier replays from storage), so it still gets every event once and
in order. A watcher that resumes (after_sequence) from before what the feed
holds does the same. Each watcher filters by sequence, so a batch that
straddles its position is cut, and no event is sent twice.

The feed ends with the notifier's stream (end_with_run: the run ended, every
event sent) or its error (sent to every watcher, as a stream of its own would
have); it stops when its last watcher leaves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2

from automl.common import context
from automl.common.runs import TERMINAL_STATES
from automl.common.stopping import search_seconds
from automl.v1 import event_pb2, notifier_service_pb2, run_pb2
from gateway.backends import Backends
from gateway.cache import AnswerCache


def snapshot(run: run_pb2.Run, best: run_pb2.ModelResult | None, now: dt.datetime) -> event_pb2.RunSnapshot:
    out = event_pb2.RunSnapshot(run=run)
    if best is not None:
        out.best_model_result.CopyFrom(best)
    elapsed = dt.timedelta(0)
    if run.state in TERMINAL_STATES and run.HasField("start_time"):
        elapsed = max(dt.timedelta(0), run.end_time.ToDatetime(dt.UTC) - run.start_time.ToDatetime(dt.UTC))
    elif run.HasField("start_time"):  # the search time used: a queued run's clock stands still
        elapsed = dt.timedelta(seconds=search_seconds(run, now.timestamp()))
    out.elapsed.FromTimedelta(elapsed)
    budget = run.stop_conditions.max_duration.ToTimedelta()
    if budget > dt.timedelta(0):
        left = dt.timedelta(0) if run.state in TERMINAL_STATES else max(dt.timedelta(0), budget - elapsed)
        out.budget_left.CopyFrom(duration_pb2.Duration())
        out.budget_left.FromTimedelta(left)
    return out


class _Entry:
    """One notifier message as every watcher is sent it; `upto`: the last event
    sequence the feed had received with it (a heartbeat repeats the last)."""

    __slots__ = ("first", "response", "upto")

    def __init__(self, upto: int, first: int, response: event_pb2.WatchRunResponse) -> None:
        self.upto = upto
        self.first = first  # the batch's first sequence; 0: a heartbeat
        self.response = response


class _Feed:
    """The one StreamEvents of a run on this process, and its recent messages."""

    def __init__(self, watches: Watches, tenant: str, run: str, after: int) -> None:
        self.watches = watches
        self.key = (tenant, run)
        self.run = run
        self.tenant = tenant
        self.log: deque[_Entry] = deque()
        self.offset = 0  # absolute index of log[0]
        self.floor = after  # every event after it is in the log or still to come
        self.last = after
        self.watchers = 0
        self.done = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._merged: dict[tuple[int, int], event_pb2.WatchRunResponse] = {}
        request = notifier_service_pb2.StreamEventsRequest(run=run, after_sequence=after, end_with_run=True)
        # Created in the first watcher's call: the task carries its tenant and request id.
        self.task = asyncio.create_task(self._read(request))

    def covers(self, after: int) -> bool:
        return not self.done and after >= self.floor

    def start(self, after: int) -> int:
        """The absolute index a watcher at `after` reads from."""
        index = self.offset + len(self.log)
        for entry in reversed(self.log):
            if entry.upto <= after:
                break
            index -= 1
        return index

    async def _read(self, request: notifier_service_pb2.StreamEventsRequest) -> None:
        stream = self.watches.backends.notifier.StreamEvents(request)
        try:
            async for message in stream:
                if message.WhichOneof("content") == "heartbeat":
                    self._append(_Entry(self.last, 0, event_pb2.WatchRunResponse(heartbeat=message.heartbeat)))
                    continue
                events = message.batch.events
                if not events:
                    continue
                self.watches.cache.drop_run(self.tenant, self.run)  # the run changed
                self.last = events[-1].sequence
                self._append(_Entry(self.last, events[0].sequence, event_pb2.WatchRunResponse(batch=message.batch)))
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        except asyncio.CancelledError:
            stream.cancel()
            raise
        finally:
            self.done = True
            self.watches.forget(self)
            self._wake()

    def merged(self, start: int, stop: int) -> event_pb2.WatchRunResponse:
        """The event batches of log entries start..stop-1 (absolute) as one
        message: made once for all the watchers that are as far behind."""
        if stop == start + 1:
            return self.log[start - self.offset].response
        merged = self._merged.get((start, stop))
        if merged is None:
            merged = event_pb2.WatchRunResponse()
            for index in range(start, stop):
                merged.batch.events.extend(self.log[index - self.offset].response.batch.events)
            self._merged[(start, stop)] = merged
        return merged

    def _append(self, entry: _Entry) -> None:
        self._merged.clear()
        self.log.append(entry)
        while len(self.log) > self.watches.buffer:
            dropped = self.log.popleft()
            self.offset += 1
            self.floor = max(self.floor, dropped.upto)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def leave(self) -> None:
        self.watchers -= 1
        if self.watchers == 0 and not self.done:
            self.task.cancel()
            self.watches.forget(self)


class Watches:
    """The WatchRun streams of this process and their shared feeds."""

    def __init__(self, backends: Backends, cache: AnswerCache, buffer: int) -> None:
        self.backends = backends
        self.cache = cache
        self.buffer = max(1, buffer)
        self.feeds: dict[tuple[str, str], _Feed] = {}
        self.private_streams = 0  # watchers on a stream of their own (resumed early, or fell behind)

    def forget(self, feed: _Feed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]

    async def watch(self, request: event_pb2.WatchRunRequest) -> AsyncIterator[event_pb2.WatchRunResponse]:
        storage = self.backends.storage
        run = await storage.GetRun(run_pb2.GetRunRequest(name=request.name))
        tenant = context.tenant.get()
        self.cache.saw_run(tenant, run)
        best = None
        if run.best_model_result:
            best = await storage.GetModelResult(
                run_pb2.GetModelResultRequest(name=run.best_model_result, view=run_pb2.MODEL_RESULT_VIEW_BASIC)
            )
        yield event_pb2.WatchRunResponse(snapshot=snapshot(run, best, dt.datetime.now(dt.UTC)))
        after = request.after_sequence if request.HasField("after_sequence") else run.last_sequence
        if run.state in TERMINAL_STATES and after >= run.last_sequence:
            return
        # A run that ended without a RUN_FINISHED event (ended before the
        # notifier could record one) still ends the watch once replayed.
        until = run.last_sequence if run.state in TERMINAL_STATES else None
        key = (tenant, run.name)
        feed = self.feeds.get(key)
        if feed is None or feed.done:
            feed = self.feeds[key] = _Feed(self, tenant, run.name, after)
        if not feed.covers(after):  # resumed from before what the feed holds
            async for message in self._own_stream(run.name, after, until):
                yield message
            return
        async for message in self._follow(feed, after, until):
            yield message

    async def _follow(self, feed: _Feed, after: int, until: int | None) -> AsyncIterator[event_pb2.WatchRunResponse]:
        feed.watchers += 1
        try:
            last = after
            position = feed.start(after)
            while True:
                if position < feed.offset:  # fell `buffer` messages behind: on a stream of its own from here
                    async for message in self._own_stream(feed.run, last, until):
                        yield message
                    return
                end = feed.offset + len(feed.log)
                if position < end:
                    entry = feed.log[position - feed.offset]
                    if not entry.first:
                        position += 1
                        yield entry.response
                        continue
                    if entry.upto <= last:
                        position += 1
                        continue
                    if entry.first > last:
                        # This batch and the ones right after it, already here, in one message: a watcher
                        # that fell behind (a burst of events) catches up in one write, not one per batch.
                        stop = position + 1
                        while (
                            stop < end
                            and feed.log[stop - feed.offset].first
                            and (until is None or feed.log[stop - 1 - feed.offset].upto < until)
                        ):
                            stop += 1
                        response = feed.merged(position, stop)
                        entry = feed.log[stop - 1 - feed.offset]
                        position = stop
                        yield response
                    else:  # straddles the watcher's position: the events it has not had
                        position += 1
                        events = [e for e in entry.response.batch.events if e.sequence > last]
                        out = event_pb2.WatchRunResponse()
                        out.batch.events.extend(events)
                        yield out
                    last = entry.upto
                    if until is not None and last >= until:
                        return
                    continue
                if feed.done:
                    if feed.error is not None:
                        raise feed.error
                    return
                await feed._changed.wait()
        finally:
            feed.leave()

    async def _own_stream(self, run: str, after: int, until: int | None) -> AsyncIterator[event_pb2.WatchRunResponse]:
        """The run's events after `after` on a notifier stream of this watcher's own."""
        self.private_streams += 1
        stream = self.backends.notifier.StreamEvents(
            notifier_service_pb2.StreamEventsRequest(run=run, after_sequence=after, end_with_run=True)
        )
        try:
            async for message in stream:
                if message.WhichOneof("content") == "heartbeat":
                    yield event_pb2.WatchRunResponse(heartbeat=message.heartbeat)
                    continue
                yield event_pb2.WatchRunResponse(batch=message.batch)
                if until is not None and message.batch.events and message.batch.events[-1].sequence >= until:
                    return
        finally:
            self.private_streams -= 1
            stream.cancel()


async def watch(backends: Backends, request: event_pb2.WatchRunRequest) -> AsyncIterator[event_pb2.WatchRunResponse]:
    """One WatchRun on a Watches of its own (no cache, no other watcher)."""
    async for message in Watches(backends, AnswerCache(0, 0), 1000).watch(request):
        yield message
