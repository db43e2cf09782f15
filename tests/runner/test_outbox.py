"""The runner's event outbox (services/runner/clients.py) with a real storage
and notifier process: events wait while the notifier is away and arrive in
order, once each, when it is back; the outbox is bounded; shutting down does
not wait for a notifier that stays away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from automl.common import identity
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2
from automl.v1 import storage_service_pb2 as pb
from services.runner import clients
from services.runner.clients import Outbox, Services
from services.runner.execution import run_event
from tests import internal
from tests.conftest import free_port
from tests.notifier.conftest import Services as Stack
from tests.notifier.conftest import start_services, stop_services


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_services(tmp_path, {})
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture
async def services(stack: Stack) -> AsyncIterator[Services]:
    """The runner's view of storage and the notifier, over the runner's channels."""
    storage = internal.aio_channel(stack.storage_target, identity.RUNNER)
    notifier = internal.aio_channel(stack.notifier_target, identity.RUNNER)
    try:
        yield Services(storage, notifier, "default")
    finally:
        await Services.close_outbox(notifier)
        await storage.close()
        await notifier.close()


def note(run: run_pb2.Run, i: int) -> event_pb2.Event:
    return run_event(run.name, run.experiment, run_note=event_pb2.RunNote(message=f"note {i}"))


async def stored_notes(services: Services, run: run_pb2.Run) -> list[tuple[int, str]]:
    reply = await services.storage.ListEvents(pb.ListEventsRequest(run=run.name), metadata=services.metadata)
    return [(e.sequence, e.run_note.message) for e in reply.events]


async def test_events_wait_for_the_notifier_and_arrive_in_order(stack: Stack, services: Services):
    run = stack.new_run()
    await services.publish([note(run, 0), note(run, 1)])
    assert services.outbox.size == 0, "a notifier that answers took them when publish returned"
    assert stack.stop_notifier() == 0
    began = time.monotonic()
    for i in range(2, 12, 2):
        await services.publish([note(run, i), note(run, i + 1)])
    assert time.monotonic() - began < 1.5, "publish hands over and returns: the search does not wait"
    await asyncio.sleep(2)  # attempts fail meanwhile
    assert services.outbox.size == 10
    stack.start_notifier()
    assert await services.outbox.flushed(60), "published once the notifier answers"
    assert await stored_notes(services, run) == [(i + 1, f"note {i}") for i in range(12)]


async def test_a_full_outbox_drops_the_oldest_with_one_log_line(stack: Stack, caplog, monkeypatch):
    monkeypatch.setattr(clients, "_capacity", 4)
    run = stack.new_run()
    assert stack.stop_notifier() == 0
    storage = internal.aio_channel(stack.storage_target, identity.RUNNER)
    notifier = internal.aio_channel(stack.notifier_target, identity.RUNNER)
    services = Services(storage, notifier, "default")
    try:
        with caplog.at_level(logging.ERROR, logger="automl.runner.clients"):
            await services.publish([note(run, 0), note(run, 1), note(run, 2)])
            await services.publish([note(run, 3), note(run, 4), note(run, 5)])
        dropped = [r for r in caplog.records if "outbox full" in r.getMessage()]
        assert [r.dropped for r in dropped] == [2], "one line, saying how many"  # type: ignore[attr-defined]
        stack.start_notifier()
        assert await services.outbox.flushed(60)
        assert await stored_notes(services, run) == [(i - 1, f"note {i}") for i in range(2, 6)]
    finally:
        await Services.close_outbox(notifier)
        await storage.close()
        await notifier.close()


async def test_closing_does_not_wait_for_a_notifier_that_stays_away(caplog):
    channel = internal.aio_channel(f"127.0.0.1:{free_port()}", identity.RUNNER)  # nobody listens there
    outbox = Outbox(channel, capacity=100)
    run = run_pb2.Run(name="runs/r", experiment="experiments/e")
    outbox.put([], [note(run, 0), note(run, 1)])
    await asyncio.sleep(0.3)
    began = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="automl.runner.clients"):
        await outbox.close(timeout=0.5)
    assert time.monotonic() - began < 2
    assert outbox.task is not None and outbox.task.done()
    assert any("shut down" in r.getMessage() and r.count == 2 for r in caplog.records)  # type: ignore[attr-defined]
    outbox.put([], [note(run, 2)])  # after closing: dropped with a log line, no task started again
    assert outbox.size == 2
    await channel.close()


async def test_a_result_stored_twice_is_the_first_one(stack: Stack, services: Services):
    """A store retried after its answer was lost meets ALREADY_EXISTS: the
    recorder answers with the result storage holds, not a failure of the run."""
    run = stack.new_run()
    await services.set_state(run.name, [c.RUN_STATE_PENDING], c.RUN_STATE_RUNNING, runner_id="r1")
    recorder = clients.GrpcRecorder(services, run.name, "r1")
    result = run_pb2.ModelResult(
        index=1,
        job_id="job-1",
        model_family="Ghost",
        outcome=run_pb2.ModelResult.OUTCOME_SUCCEEDED,
        primary_score=0.5,
        metrics=[c.MetricSummary(metric=c.METRIC_ACCURACY, mean=0.5)],
        folds_run=1,
    )
    first, _ = await recorder.store_result(result)
    again, counted = await recorder.store_result(result)  # the retry of a store that succeeded
    assert again.name == first.name
    assert counted.models_evaluated == 1
    other = run_pb2.ModelResult()
    other.CopyFrom(result)
    other.job_id = "job-2"  # another candidate at a taken position is still refused
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await recorder.store_result(other)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
