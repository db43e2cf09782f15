"""How the gateway changes a run's course: queue it when no runner can take
it, hand it to a runner for a takeover, ask it to stop, or end it when no
runner will (a run queued too many times, a runner that went silent).

Used by StopRun / StartRun and by the supervisor, always for an explicit
tenant, so that background work (the supervisor) acts with the run owner's
identity like a user call does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from automl.common import errors, runs, status
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, notifier_service_pb2, run_pb2, runner_service_pb2, storage_service_pb2
from gateway.backends import Backends, as_tenant

log = logging.getLogger("automl.gateway.control")

# The runner answers these when it does not hold the run (another replica
# does, or it is gone): the stop is then written to storage, where the owning
# runner sees it on its next heartbeat.
NOT_HERE = (errors.NotFound, errors.Unavailable, errors.DeadlineExceeded)
# A Publish is retried on these answers (with the same event ids, so never stored twice).
RETRIED = (errors.Unavailable, errors.DeadlineExceeded, errors.Aborted)
PUBLISH_ATTEMPTS = 5  # 0.25 + 0.5 + 1 + 2 s between them
PUBLISH_SECONDS = 3.0  # one attempt: a stop never waits long for a notifier that hangs


def event(run: run_pb2.Run, **payload: object) -> event_pb2.Event:
    """An event of `run`, stamped now, with a new id: publishing it again stores it once."""
    return runs.run_event(run.name, run.experiment, **payload)


class RunControl:
    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.changed: Callable[[str, str], None] = _nothing
        """Told (tenant, run name) after each change this makes to a run, or
        asks its runner to make (the gateway's cache drops the run's answers)."""

    async def get(self, tenant: str, name: str) -> run_pb2.Run:
        return await self.backends.storage.GetRun(run_pb2.GetRunRequest(name=name), metadata=as_tenant(tenant))

    async def stop(self, tenant: str, run: run_pb2.Run, reason: c.StopReason, message: str) -> run_pb2.Run:
        """Ask an active run to stop; return it as it stands (a terminal run as is)."""
        if runs.is_terminal(run.state):
            return run
        if run.state == c.RUN_STATE_QUEUED:  # no runner holds it: end it here, its stored results kept
            done = run.models_evaluated + run.models_failed + run.models_stopped
            ended = await self.end(
                tenant, run, runs.final_state(reason, done), reason, message, expected=[c.RUN_STATE_QUEUED]
            )
            if ended is not None:
                return ended
            run = await self.get(tenant, run.name)  # a runner claimed it meanwhile
            if runs.is_terminal(run.state):
                return run
        if run.state == c.RUN_STATE_PENDING:
            ended = await self.end(tenant, run, c.RUN_STATE_CANCELLED, reason, message, expected=[c.RUN_STATE_PENDING])
            if ended is not None:
                return ended
            run = await self.get(tenant, run.name)  # a runner claimed it meanwhile
        request = runner_service_pb2.StopExecutionRequest(name=run.name, reason=reason, message=message)
        try:
            return await self.backends.runner.StopExecution(request, metadata=as_tenant(tenant))
        except errors.FailedPrecondition:  # it ended meanwhile
            return await self.get(tenant, run.name)
        except NOT_HERE:
            pass
        finally:
            self.changed(tenant, run.name)
        return await self._stop_in_storage(tenant, run, reason, message)

    async def enqueue(self, tenant: str, run: run_pb2.Run, why: str, if_full: c.RunState) -> run_pb2.Run | None:
        """PENDING -> QUEUED: no runner could take it now. None when it was not
        PENDING any more (a runner claimed it meanwhile). When the tenant's
        queue is full the run ends in state `if_full`, saying why, and storage's
        RESOURCE_EXHAUSTED is raised."""
        try:
            return await self._queue(tenant, run, [c.RUN_STATE_PENDING], f"waiting for a runner: {why}", takeover=False)
        except errors.ResourceExhausted as full:
            message = f"{why}; {full.message}"
            await self.end(tenant, run, if_full, c.STOP_REASON_ERROR, message, expected=[c.RUN_STATE_PENDING])
            raise

    async def take_over(self, tenant: str, run: run_pb2.Run, why: str) -> run_pb2.Run | None:
        """RUNNING -> QUEUED with one more takeover: its runner is lost; the next
        runner with capacity goes on from its stored results."""
        return await self._queue(tenant, run, [c.RUN_STATE_RUNNING], why, takeover=True)

    async def _queue(
        self, tenant: str, run: run_pb2.Run, expected: list[c.RunState], message: str, takeover: bool
    ) -> run_pb2.Run | None:
        request = storage_service_pb2.UpdateRunStateRequest(
            name=run.name, expected_states=expected, state=c.RUN_STATE_QUEUED, status_message=message, takeover=takeover
        )
        try:
            queued = await self.backends.storage.UpdateRunState(request, metadata=as_tenant(tenant))
        except errors.FailedPrecondition:
            return None
        finally:
            self.changed(tenant, run.name)
        log.info("run queued", extra={"run": run.name, "position": queued.queue_position, "detail": message})
        await self.publish(tenant, runs.queued_events(queued, run.state, message))
        return queued

    async def _stop_in_storage(self, tenant: str, run: run_pb2.Run, reason: c.StopReason, message: str) -> run_pb2.Run:
        try:
            stopping = await self._set_state(
                tenant, run.name, [c.RUN_STATE_RUNNING], c.RUN_STATE_STOPPING, reason, message
            )
        except errors.FailedPrecondition:
            return await self.get(tenant, run.name)  # STOPPING already, or ended
        await self.publish(tenant, runs.stopping_events(stopping, reason, message))
        return stopping

    async def end(
        self,
        tenant: str,
        run: run_pb2.Run,
        state: c.RunState,
        reason: c.StopReason,
        message: str,
        expected: list[c.RunState],
    ) -> run_pb2.Run | None:
        """Move the run to terminal `state` if it is in `expected`, and publish its
        final events; None when it was not (someone else moved it)."""
        try:
            ended = await self._set_state(tenant, run.name, expected, state, reason, message)
        except errors.FailedPrecondition:
            return None
        log.warning(
            "run ended by the gateway",
            extra={"run": run.name, "state": c.RunState.Name(state), "reason": c.StopReason.Name(reason)},
        )
        await self.publish(tenant, runs.final_events(ended, run.state, message, reason))
        return ended

    async def _set_state(
        self, tenant: str, name: str, expected: list[c.RunState], state: c.RunState, reason: c.StopReason, message: str
    ) -> run_pb2.Run:
        request = storage_service_pb2.UpdateRunStateRequest(
            name=name, expected_states=expected, state=state, stop_reason=reason, status_message=message
        )
        try:
            return await self.backends.storage.UpdateRunState(request, metadata=as_tenant(tenant))
        finally:
            self.changed(tenant, name)

    async def publish(self, tenant: str, events: list[event_pb2.Event]) -> None:
        """Publish, retrying a notifier that does not answer (PUBLISH_ATTEMPTS
        times, a few seconds in all) with the same event ids, so that a Publish
        whose answer was lost stores nothing twice. A notifier away for longer
        costs watchers these events, never the state change, which storage
        already holds."""
        request = notifier_service_pb2.PublishRequest(events=events)
        delay = 0.25
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self.backends.notifier.Publish(request, metadata=as_tenant(tenant), timeout=PUBLISH_SECONDS)
                return
            except errors.AutoMLError as exc:
                if not isinstance(exc, RETRIED) or attempt == PUBLISH_ATTEMPTS - 1:
                    log.error("events not published", extra={"count": len(events), "error": status.code_of(exc).name})
                    return
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)


def _nothing(tenant: str, name: str) -> None:
    pass
