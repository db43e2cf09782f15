"""The runner's calls to storage and the notifier, for one tenant: every call
carries the tenant explicitly (background work outlives the call that
started it) and the channel's deadline.

Events go to the notifier through the runner process's outbox (one per
notifier channel, shared by every tenant's Services): publish() hands them
over and returns, and a background task publishes them in order, retrying
with the same event ids (so a Publish whose answer was lost stores nothing
twice) until the notifier answers. The outbox is bounded
(AUTOML_RUNNER_OUTBOX_EVENTS): when full, the oldest events are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import field_mask_pb2

from automl.common import context, errors, status
from automl.common.runs import run_event
from automl.v1 import common_pb2 as c
from automl.v1 import (
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    notifier_service_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from services.runner.execution import RunGone

log = logging.getLogger("automl.runner.clients")

T = TypeVar("T")

CHUNK = 1024 * 1024
PREDICTIONS_KIND = "predictions/npz"
STORAGE_PATIENCE_SECONDS = 20.0
"""How long a call is retried while storage is UNAVAILABLE (restarting): less
than AUTOML_RUNNER_LOST_SECONDS' default (30 s), after which the run would be
taken over anyway."""
GONE = (errors.FailedPrecondition, errors.NotFound)

OUTBOX_EVENTS = 10_000
"""Events an outbox keeps at most by default; services/runner/server.py sets AUTOML_RUNNER_OUTBOX_EVENTS."""
PUBLISH_EVENTS = 1000  # events per Publish, the notifier's limit
PUBLISH_SECONDS = 10.0  # one attempt (a notifier that is down fails it at once)
FIRST_DELAY_SECONDS = 0.25
MAX_DELAY_SECONDS = 4.0  # between attempts, however long the notifier is away
CLOSE_SECONDS = 2.0  # what shutting down waits for the outbox to empty
TAKEN_SECONDS = 1.0  # what publish() waits at most for a notifier that answers to take its events
# Answers that retrying with the same events cannot change: those events are dropped.
REFUSED = (
    errors.InvalidArgument,
    errors.NotFound,
    errors.PermissionDenied,
    errors.Unauthenticated,
    errors.Unimplemented,
    errors.OutOfRange,
)


@dataclass
class _Entry:
    """The events of one publish() call, for one tenant."""

    number: int  # order of the call
    metadata: tuple[tuple[str, str], ...]
    events: list[event_pb2.Event]


class Outbox:
    """The events of one runner process that the notifier has not taken yet,
    in the order they were published, at most `capacity` of them."""

    def __init__(self, notifier: grpc.aio.Channel, capacity: int = OUTBOX_EVENTS) -> None:
        self.stub = notifier_service_pb2_grpc.NotifierStub(notifier)
        self.capacity = max(1, capacity)
        self.entries: deque[_Entry] = deque()
        self.size = 0  # events in entries
        self.calls = 0
        self.taken_through = 0  # the number of the last call whose events left the outbox
        self.answering = True  # the notifier took the last events in time: publish() may wait for it
        self.moved: asyncio.Event | None = None  # set (and replaced) whenever events leave
        self.dropped = 0  # events dropped since the start, for being too many or refused
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.wake: asyncio.Event | None = None
        self.emptied: asyncio.Event | None = None

    def put(self, metadata: Sequence[tuple[str, str]], events: Sequence[event_pb2.Event]) -> int:
        """Keep `events` to publish after every event put before them; returns
        the number of this call (0: nothing kept)."""
        if not events:
            return 0
        if self.closed:
            log.error("events not published: the runner is shutting down", extra={"count": len(events)})
            return 0
        self.calls += 1
        self.entries.append(_Entry(self.calls, tuple(metadata), list(events)))
        self.size += len(events)
        if self.size > self.capacity:
            self._drop_oldest(self.size - self.capacity)
        if self.task is None:
            self.wake = asyncio.Event()
            self.emptied = asyncio.Event()
            self.task = asyncio.create_task(self._send_forever(), name="event outbox")
        assert self.wake is not None and self.emptied is not None
        self.emptied.clear()
        self.wake.set()
        return self.calls

    async def taken(self, number: int, timeout: float) -> bool:
        """Wait, at most `timeout` seconds and only while the notifier answers,
        until the events of call `number` left the outbox."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.taken_through < number and self.answering and not self.closed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                self.answering = False  # slow or away: no one waits again before it takes events
                return False
            if self.moved is None:
                self.moved = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.moved.wait(), left)
        return self.taken_through >= number

    def _drop_oldest(self, count: int) -> None:
        left = count
        while left:
            head = self.entries[0]
            if len(head.events) <= left:
                self.entries.popleft()
                left -= len(head.events)
            else:
                head.events = head.events[left:]
                left = 0
        self.size -= count
        self.dropped += count
        log.error(
            "event outbox full: the oldest events were dropped",
            extra={"dropped": count, "capacity": self.capacity, "setting": "AUTOML_RUNNER_OUTBOX_EVENTS"},
        )

    def _next(self, alone: bool) -> list[_Entry]:
        """The oldest entries that go in one Publish: of one tenant, up to PUBLISH_EVENTS."""
        batch = [self.entries[0]]
        size = len(batch[0].events)
        for entry in list(self.entries)[1:]:
            if alone or entry.metadata != batch[0].metadata or size + len(entry.events) > PUBLISH_EVENTS:
                break
            batch.append(entry)
            size += len(entry.events)
        return batch

    def _remove(self, batch: list[_Entry]) -> None:
        """Forget the entries of `batch` (those the overflow did not drop meanwhile)."""
        last = batch[-1].number
        while self.entries and self.entries[0].number <= last:
            self.size -= len(self.entries.popleft().events)
        self.taken_through = max(self.taken_through, last)
        self._moved()

    def _moved(self) -> None:
        if self.moved is not None:
            self.moved.set()
            self.moved = None

    async def _send_forever(self) -> None:
        assert self.wake is not None and self.emptied is not None
        delay = FIRST_DELAY_SECONDS
        alone = False  # one entry per Publish: finding which one the notifier refuses
        away = False
        while True:
            if not self.entries:
                self.emptied.set()
                if self.closed:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            batch = self._next(alone)
            events = [event for entry in batch for event in entry.events]
            for start in range(0, len(events), PUBLISH_EVENTS):  # one entry may hold more than a Publish takes
                try:
                    await self.stub.Publish(
                        notifier_service_pb2.PublishRequest(events=events[start : start + PUBLISH_EVENTS]),
                        metadata=list(batch[0].metadata),
                        timeout=PUBLISH_SECONDS,
                    )
                except REFUSED as exc:
                    if len(batch) > 1:
                        alone = True
                    else:
                        log.error(
                            "events not published: the notifier refused them",
                            extra={"count": len(events), "error": status.code_of(exc).name, "details": exc.message},
                        )
                        self.dropped += len(events)
                        self._remove(batch)
                        alone = False
                    break
                except errors.AutoMLError as exc:
                    self.answering = False
                    self._moved()  # publish() stops waiting
                    if not away:
                        away = True
                        log.warning(
                            "the notifier does not answer: events kept in the outbox until it does",
                            extra={"queued": self.size, "error": status.code_of(exc).name},
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_DELAY_SECONDS)
                    break
            else:
                self._remove(batch)
                delay = FIRST_DELAY_SECONDS
                alone = False
                self.answering = True
                if away:
                    away = False
                    log.info("the notifier answers again", extra={"queued": self.size})

    async def flushed(self, timeout: float) -> bool:
        """Wait until every event put so far was taken (or refused); False when `timeout` passed first."""
        if self.emptied is None or not self.entries:
            return True
        try:
            await asyncio.wait_for(self.emptied.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Publish what is left for at most `timeout` seconds, then stop; what
        is still there is lost, with a log line."""
        self.closed = True
        self._moved()
        if self.task is None:
            return
        assert self.wake is not None
        self.wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.size:
            log.error(
                "events not published: the runner shut down before the notifier took them", extra={"count": self.size}
            )


_outboxes: weakref.WeakKeyDictionary[grpc.aio.Channel, Outbox] = weakref.WeakKeyDictionary()
_capacity = OUTBOX_EVENTS


def configure_outbox(capacity: int) -> None:
    """The capacity of the outboxes made from now on (AUTOML_RUNNER_OUTBOX_EVENTS)."""
    global _capacity
    _capacity = capacity


def outbox_of(notifier: grpc.aio.Channel) -> Outbox:
    """The outbox of a notifier channel: one per runner process."""
    outbox = _outboxes.get(notifier)
    if outbox is None:
        outbox = _outboxes[notifier] = Outbox(notifier, _capacity)
    return outbox


class Services:
    """Storage and notifier, as this tenant sees them."""

    def __init__(self, storage: grpc.aio.Channel, notifier: grpc.aio.Channel, tenant: str) -> None:
        self.storage = storage_service_pb2_grpc.StorageStub(storage)
        self.notifier = notifier_service_pb2_grpc.NotifierStub(notifier)
        self.tenant = tenant
        self.metadata = [(context.TENANT_KEY, tenant)] if tenant else []
        self.outbox = outbox_of(notifier)

    @staticmethod
    async def close_outbox(notifier: grpc.aio.Channel, timeout: float = CLOSE_SECONDS) -> None:
        """Shutting down: publish what the outbox of `notifier` holds for at most
        `timeout` seconds, then stop it (before the channel is closed)."""
        outbox = _outboxes.pop(notifier, None)
        if outbox is not None:
            await outbox.close(timeout)

    async def get_run(self, name: str) -> run_pb2.Run:
        return await self.storage.GetRun(run_pb2.GetRunRequest(name=name), metadata=self.metadata)

    async def get_experiment(self, name: str) -> experiment_pb2.Experiment:
        return await self.storage.GetExperiment(experiment_pb2.GetExperimentRequest(name=name), metadata=self.metadata)

    async def get_dataset(self, name: str) -> dataset_pb2.Dataset:
        return await self.storage.GetDataset(dataset_pb2.GetDatasetRequest(name=name), metadata=self.metadata)

    async def download(self, name: str, path: Path) -> int:
        """Stream a dataset's bytes into a file; returns the size."""
        size = 0
        with path.open("wb") as out:
            call = self.storage.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=name), metadata=self.metadata)
            async for message in call:
                out.write(message.chunk)
                size += len(message.chunk)
        return size

    async def write_artifact(self, kind: str, payload: bytes | Path) -> storage_service_pb2.Artifact:
        """Store bytes, or a file streamed in chunks, as an artifact."""

        async def requests() -> AsyncIterator[storage_service_pb2.WriteArtifactRequest]:
            yield storage_service_pb2.WriteArtifactRequest(header=storage_service_pb2.WriteArtifactHeader(kind=kind))
            if isinstance(payload, bytes):
                for start in range(0, len(payload), CHUNK):
                    yield storage_service_pb2.WriteArtifactRequest(chunk=payload[start : start + CHUNK])
                return
            with payload.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield storage_service_pb2.WriteArtifactRequest(chunk=chunk)

        # Again from the start while storage restarts: nothing was acknowledged.
        return await self.retry(lambda: self.storage.WriteArtifact(requests(), metadata=self.metadata, timeout=600))

    async def model_results(self, run: str) -> list[run_pb2.ModelResult]:
        """Every stored result of a run, in evaluation order, FULL view."""
        out: list[run_pb2.ModelResult] = []
        token = ""
        while True:
            request = run_pb2.ListModelResultsRequest(
                run=run, page_size=1000, page_token=token, view=run_pb2.MODEL_RESULT_VIEW_FULL
            )
            page = await self.storage.ListModelResults(request, metadata=self.metadata)
            out += page.model_results
            token = page.next_page_token
            if not token:
                return out

    async def get_model_result(self, name: str) -> run_pb2.ModelResult:
        return await self.storage.GetModelResult(
            run_pb2.GetModelResultRequest(name=name, view=run_pb2.MODEL_RESULT_VIEW_FULL), metadata=self.metadata
        )

    async def get_trained_model(self, name: str) -> model_pb2.TrainedModel:
        return await self.storage.GetTrainedModel(model_pb2.GetTrainedModelRequest(name=name), metadata=self.metadata)

    async def update_trained_model(self, model: model_pb2.TrainedModel, paths: list[str]) -> model_pb2.TrainedModel:
        request = storage_service_pb2.UpdateTrainedModelRequest(
            trained_model=model, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return await self.retry(lambda: self.storage.UpdateTrainedModel(request, metadata=self.metadata))

    async def run_started(self, run: str) -> event_pb2.RunStarted:
        """The RUN_STARTED event of a run: where its split is recorded."""
        reply = await self.storage.ListEvents(
            storage_service_pb2.ListEventsRequest(run=run, event_types=[event_pb2.EVENT_TYPE_RUN_STARTED], page_size=1),
            metadata=self.metadata,
        )
        if not reply.events:
            raise errors.FailedPrecondition(f"{run} has no RUN_STARTED event: its split was never recorded")
        return reply.events[0].run_started

    async def read_artifact(self, name: str, path: Path, expected_sha256: str = "") -> storage_service_pb2.Artifact:
        """Stream an artifact into a file, hashing it on the way; DataLoss when
        the bytes are not the ones storage recorded (or `expected_sha256`)."""
        digest = hashlib.sha256()
        artifact = None
        call = self.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=name), metadata=self.metadata)
        with path.open("wb") as out:
            async for message in call:
                if message.WhichOneof("content") == "artifact":
                    artifact = message.artifact
                else:
                    digest.update(message.chunk)
                    out.write(message.chunk)
        if artifact is None:
            raise errors.DataLoss(f"{name}: storage sent no description of the artifact")
        found = digest.hexdigest()
        for recorded in filter(None, (artifact.sha256, expected_sha256)):
            if found != recorded:
                path.unlink(missing_ok=True)
                raise errors.DataLoss(
                    f"{name} has sha256 {found}, not the recorded {recorded}: it was altered, refusing to load it"
                )
        return artifact

    async def set_state(
        self,
        name: str,
        expected: Sequence[c.RunState],
        state: c.RunState,
        reason: c.StopReason = c.STOP_REASON_UNSPECIFIED,
        message: str = "",
        runner_id: str = "",
        add_notes: Sequence[str] = (),
    ) -> run_pb2.Run:
        request = storage_service_pb2.UpdateRunStateRequest(
            name=name,
            expected_states=list(expected),
            state=state,
            stop_reason=reason,
            status_message=message,
            runner_id=runner_id,
            add_notes=list(add_notes),
        )
        return await self.retry(lambda: self.storage.UpdateRunState(request, metadata=self.metadata))

    async def publish(self, events: list[event_pb2.Event]) -> None:
        """Hand events to the outbox, which publishes them after those handed
        before, retrying until the notifier takes them. When nothing waits
        before them and the notifier answers, wait (TAKEN_SECONDS at most)
        until it took them, so that they are stored when this returns, as
        callers expect; otherwise return at once: the search never waits for a
        notifier that is away, nor behind a backlog. Events are a view of what storage holds: a notifier that stays
        away delays watchers' live feed, and costs it events only past the
        outbox's capacity, never the results."""
        backlog = bool(self.outbox.entries)
        number = self.outbox.put(self.metadata, events)
        if number and not backlog:
            await self.outbox.taken(number, TAKEN_SECONDS)

    async def retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again while storage is UNAVAILABLE, for up to
        STORAGE_PATIENCE_SECONDS: a storage restart (seconds) must not fail a
        run whose results are safe (measured by bench/chaos.py: 3.75 s of
        retries failed 6 of 90 runs through storage kills)."""
        delay = 0.25
        deadline = time.monotonic() + STORAGE_PATIENCE_SECONDS
        while True:
            try:
                return await call()
            except errors.Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


class GrpcRecorder:
    """execution.RunRecorder over storage and the notifier."""

    def __init__(self, services: Services, run: str, runner_id: str) -> None:
        self.services = services
        self.run = run
        self.runner_id = runner_id

    async def set_state(
        self,
        expected: Sequence[c.RunState],
        state: c.RunState,
        reason: c.StopReason = c.STOP_REASON_UNSPECIFIED,
        message: str = "",
    ) -> run_pb2.Run:
        try:
            return await self.services.set_state(self.run, expected, state, reason, message)
        except GONE as exc:
            raise RunGone(exc.message) from None

    async def heartbeat(self, add_notes: Sequence[str] = ()) -> run_pb2.Run:
        request = storage_service_pb2.HeartbeatRunRequest(
            name=self.run, runner_id=self.runner_id, add_notes=list(add_notes)
        )
        try:
            return await self.services.storage.HeartbeatRun(request, metadata=self.services.metadata)
        except GONE as exc:
            raise RunGone(exc.message) from None

    async def store_result(self, result: run_pb2.ModelResult) -> tuple[run_pb2.ModelResult, run_pb2.Run]:
        request = storage_service_pb2.BatchCreateModelResultsRequest(run=self.run, model_results=[result])
        try:
            reply = await self.services.retry(
                lambda: self.services.storage.BatchCreateModelResults(request, metadata=self.services.metadata)
            )
        except GONE as exc:
            raise RunGone(exc.message) from None
        except errors.AlreadyExists as exc:  # stored by an attempt whose answer was lost
            return await self._stored(result, exc)
        return reply.model_results[0], reply.run

    async def _stored(
        self, result: run_pb2.ModelResult, error: errors.AlreadyExists
    ) -> tuple[run_pb2.ModelResult, run_pb2.Run]:
        """The result storage holds at `result`'s position, when it is this one."""
        for stored in await self.services.model_results(self.run):
            if stored.index == result.index and stored.job_id == result.job_id:
                log.info("result stored by an earlier attempt", extra={"run": self.run, "index": result.index})
                return stored, await self.services.get_run(self.run)
        raise error

    async def publish(self, events: list[event_pb2.Event]) -> None:
        await self.services.publish(events)

    async def keep_predictions(self, predictions: npt.NDArray[np.float32]) -> str:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, predictions=predictions.astype(np.float32))
        artifact = await self.services.write_artifact(PREDICTIONS_KIND, buffer.getvalue())
        return artifact.name

    async def add_notes(self, notes: list[str]) -> None:
        """Notes on the run (through its heartbeat), and as events for its watchers."""
        run = await self.services.retry(lambda: self.heartbeat(notes))
        await self.publish([run_event(self.run, run.experiment, run_note=event_pb2.RunNote(message=n)) for n in notes])
