"""The gateway's own events (gateway/control.py): each with an id, and a
Publish the notifier did not answer retried with the same ids."""

from __future__ import annotations

from types import SimpleNamespace

import grpc

from automl.common import status
from automl.v1 import event_pb2, run_pb2
from gateway import control


def unanswered() -> Exception:
    """What a stub on an internal channel raises for a notifier that is away."""
    return status.from_rpc_error(
        grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "away")
    )


class Notifier:
    """Fails the first `failures` calls UNAVAILABLE, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[list[event_pb2.Event]] = []

    async def Publish(self, request, **options):
        self.requests.append(list(request.events))
        if len(self.requests) <= self.failures:
            raise unanswered()


async def test_events_have_ids_and_a_publish_is_retried_with_them():
    run = run_pb2.Run(name="runs/r", experiment="experiments/e")
    events = [control.event(run, stop_requested=event_pb2.StopRequested()) for _ in range(2)]
    assert len({e.id for e in events}) == 2 and all(len(e.id) == 32 for e in events)
    notifier = Notifier(failures=2)
    await control.RunControl(SimpleNamespace(notifier=notifier)).publish("t", events)  # type: ignore[arg-type]
    assert len(notifier.requests) == 3
    assert all([e.id for e in r] == [e.id for e in events] for r in notifier.requests), "the same ids each time"


async def test_a_notifier_away_for_long_costs_the_events_not_the_call():
    run = run_pb2.Run(name="runs/r", experiment="experiments/e")
    notifier = Notifier(failures=100)
    control_ = control.RunControl(SimpleNamespace(notifier=notifier))  # type: ignore[arg-type]
    await control_.publish("t", [control.event(run, stop_requested=event_pb2.StopRequested())])
    assert len(notifier.requests) == control.PUBLISH_ATTEMPTS
