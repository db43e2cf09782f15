"""WatchRun: a snapshot of the run, then its events live, until it ends.

The snapshot and the live feed meet at the run's last_sequence as read with
the snapshot: events after it come from the notifier's replay, so nothing
falls between the two and nothing is sent twice (list-then-watch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

from google.protobuf import duration_pb2

from automl.common.stopping import TERMINAL_STATES, search_seconds
from automl.v1 import event_pb2, notifier_service_pb2, run_pb2
from gateway.backends import Backends


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


async def watch(backends: Backends, request: event_pb2.WatchRunRequest) -> AsyncIterator[event_pb2.WatchRunResponse]:
    run = await backends.storage.GetRun(run_pb2.GetRunRequest(name=request.name))
    best = None
    if run.best_model_result:
        best = await backends.storage.GetModelResult(
            run_pb2.GetModelResultRequest(name=run.best_model_result, view=run_pb2.MODEL_RESULT_VIEW_BASIC)
        )
    yield event_pb2.WatchRunResponse(snapshot=snapshot(run, best, dt.datetime.now(dt.UTC)))
    after = request.after_sequence if request.HasField("after_sequence") else run.last_sequence
    if run.state in TERMINAL_STATES and after >= run.last_sequence:
        return
    stream = backends.notifier.StreamEvents(
        notifier_service_pb2.StreamEventsRequest(run=run.name, after_sequence=after, end_with_run=True)
    )
    async for message in stream:
        if message.WhichOneof("content") == "heartbeat":
            yield event_pb2.WatchRunResponse(heartbeat=message.heartbeat)
            continue
        yield event_pb2.WatchRunResponse(batch=message.batch)
        # A run that ended without a RUN_FINISHED event (ended before the
        # notifier could record one) still ends the watch once replayed.
        if (
            run.state in TERMINAL_STATES
            and message.batch.events
            and message.batch.events[-1].sequence >= run.last_sequence
        ):
            stream.cancel()
            return
