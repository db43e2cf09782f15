"""A run's lifecycle in one place: which state changes are allowed, and the
events that tell watchers a run changed course.

Storage enforces CHANGES on every UpdateRunState, so a late or confused
caller (a lost runner's last write, a retried stop) can never move a run
back from an end; the gateway (gateway/control.py) and the runner
(services/runner) build their state events here, so that an end told by the
gateway and one told by the runner carry the same fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from automl.common import errors
from automl.common.events import new_event_id
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2

PENDING, QUEUED, RUNNING, STOPPING = c.RUN_STATE_PENDING, c.RUN_STATE_QUEUED, c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING
SUCCEEDED, STOPPED, FAILED, CANCELLED = (
    c.RUN_STATE_SUCCEEDED,
    c.RUN_STATE_STOPPED,
    c.RUN_STATE_FAILED,
    c.RUN_STATE_CANCELLED,
)

STATES: frozenset[c.RunState] = frozenset((PENDING, QUEUED, RUNNING, STOPPING, SUCCEEDED, STOPPED, FAILED, CANCELLED))
"""The states a stored run can be in (never RUN_STATE_UNSPECIFIED)."""

CHANGES: frozenset[tuple[c.RunState, c.RunState]] = frozenset(
    [
        # PENDING: created by StartRun, not yet claimed.
        (PENDING, RUNNING),  # a runner claims it
        (PENDING, QUEUED),  # no runner can take it now (StartRun), or its gateway died (supervisor)
        (PENDING, FAILED),  # its data cannot be searched (runner), or the queue is full (supervisor)
        (PENDING, CANCELLED),  # stopped by its user, the runner answered an error, or the queue is full (StartRun)
        # QUEUED: waits for a runner with capacity; it may have run before (takeover, hand-back).
        (QUEUED, RUNNING),  # a runner claims it (the supervisor's dispatch)
        (QUEUED, FAILED),  # its data cannot be searched (runner)
        # Stopped while no runner holds it, the gateway ends it itself with
        # final_state: SUCCEEDED for a run's own stop condition (a
        # taken-over run whose budget is used), STOPPED or CANCELLED for its
        # user's stop.
        (QUEUED, SUCCEEDED),
        (QUEUED, STOPPED),
        (QUEUED, CANCELLED),
        # RUNNING: a runner searches.
        (RUNNING, STOPPING),  # a stop was asked (of the runner, or of storage when the runner is away)
        (RUNNING, QUEUED),  # its runner was lost (supervisor's takeover) or shuts down (hand-back)
        # Its end, written by its runner or, when the runner went silent, by
        # the supervisor, which asks "RUNNING or STOPPING" -> final_state:
        # CANCELLED when a user's stop came before any candidate was done.
        (RUNNING, SUCCEEDED),
        (RUNNING, STOPPED),
        (RUNNING, FAILED),
        (RUNNING, CANCELLED),
        # STOPPING: no new candidate starts; those under way get their grace period.
        # Its runner lets go of it: UpdateRunStateRequest.takeover documents
        # this change, and storage counts the search time it used.
        (STOPPING, QUEUED),
        (STOPPING, SUCCEEDED),
        (STOPPING, STOPPED),
        (STOPPING, FAILED),
        (STOPPING, CANCELLED),
        # SUCCEEDED, STOPPED, FAILED and CANCELLED are final: no change leaves them.
    ]
)
"""Every allowed (from, to) change of a run's state. Setting a state to
itself is not a change any caller makes, so it is refused like the others."""

_NEXT: dict[int, tuple[c.RunState, ...]] = {
    state: tuple(sorted(to for frm, to in CHANGES if frm == state)) for state in sorted(STATES)
}

TERMINAL: frozenset[c.RunState] = frozenset(state for state in STATES if not _NEXT[state])
"""The states no change leaves: the run ended."""
TERMINAL_STATES = tuple(sorted(TERMINAL))
"""TERMINAL in a fixed order (for SQL IN lists and listings)."""
ACTIVE_STATES = (PENDING, QUEUED, RUNNING, STOPPING)
"""A run in these states has not ended: someone must see it to its end."""
HOLDING_STATES = (PENDING, RUNNING, STOPPING)
"""A run in these states holds a runner, or is about to (what AUTOML_TENANT_MAX_ACTIVE_RUNS counts)."""
FINAL_STATE: dict[c.StopReason, c.RunState] = {
    c.STOP_REASON_USER: STOPPED,
    c.STOP_REASON_ERROR: FAILED,
    c.STOP_REASON_RUNNER_LOST: FAILED,
}
"""The state a run ends in, by why it stopped (SUCCEEDED for the others: its own conditions)."""


def final_state(reason: c.StopReason, models_done: int) -> c.RunState:
    """The terminal state of a run that stopped for `reason` after `models_done`
    candidates: a user's stop before any candidate is a cancellation."""
    state = FINAL_STATE.get(reason, SUCCEEDED)
    return CANCELLED if state == STOPPED and models_done == 0 else state


def _name(state: int) -> str:
    try:
        return c.RunState.Name(state)
    except ValueError:
        return f"run state {state}"


def _either(states: Iterable[int]) -> str:
    names = [_name(s) for s in states]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def is_terminal(state: int) -> bool:
    """The run ended: no change leaves `state`."""
    return state in TERMINAL


def can_change(previous: int, state: int) -> bool:
    """May a run in `previous` go to `state`?"""
    return (previous, state) in CHANGES


def check_change(previous: int, state: int, subject: str = "the run") -> None:
    """FailedPrecondition, saying what the run may do instead, unless a run
    in `previous` may go to `state`. `subject` names the run in the message
    (e.g. "runs/abc")."""
    if can_change(previous, state):
        return
    refused = f"{subject} cannot change from {_name(previous)} to {_name(state)}"
    if is_terminal(previous):
        raise errors.FailedPrecondition(
            f"{refused}: {_name(previous)} is final, a run that ended never changes again (start a new run instead)"
        )
    if previous not in STATES:
        raise errors.FailedPrecondition(f"{refused}: {_name(previous)} is not a state a stored run can be in")
    raise errors.FailedPrecondition(
        f"{refused}: from {_name(previous)} a run may only go to {_either(_NEXT[previous])}"
    )


# ------------------------------------------------------------------ events


def run_event(run: str, experiment: str, **payload: Any) -> event_pb2.Event:
    """An event of a run, stamped now, with a new id (a uuid4 in hex: a
    retried Publish of it stores it once); the notifier numbers it. `payload`:
    one of Event's payload fields by name (run_state_changed=..., run_note=...)."""
    event = event_pb2.Event(run=run, experiment=experiment, id=new_event_id(), **payload)
    event.create_time.GetCurrentTime()
    return event


def final_events(
    ended: run_pb2.Run, previous: c.RunState, message: str, reason: c.StopReason = c.STOP_REASON_UNSPECIFIED
) -> list[event_pb2.Event]:
    """RunStateChanged (from `previous`) and RunFinished of a run just moved to
    its terminal state: `ended` is the run as storage answered the change.
    Its stored stop reason wins over `reason` (the first reason is kept); the
    RunFinished carries the run's stored status message, counts, best result
    and score, and its duration from its first start when it had one."""
    if not is_terminal(ended.state):
        raise ValueError(f"{ended.name} is {_name(ended.state)}, not ended: it has no final events")
    stop_reason = ended.stop_reason or reason
    finished = event_pb2.RunFinished(
        state=ended.state,
        stop_reason=stop_reason,
        message=ended.status_message,
        models_evaluated=ended.models_evaluated,
        models_failed=ended.models_failed,
        models_stopped=ended.models_stopped,
        best_model_result=ended.best_model_result,
    )
    # A run that never started (refused, or cancelled while waiting) has no duration.
    if ended.HasField("start_time") and ended.HasField("end_time"):
        finished.duration.FromTimedelta(ended.end_time.ToDatetime() - ended.start_time.ToDatetime())
    if ended.HasField("best_score"):
        finished.best_score = ended.best_score
    changed = event_pb2.RunStateChanged(
        previous_state=previous, state=ended.state, stop_reason=stop_reason, message=message
    )
    events = [
        run_event(ended.name, ended.experiment, run_state_changed=changed),
        run_event(ended.name, ended.experiment, run_finished=finished),
    ]
    for event, kind in zip(events, ("changed", "finished"), strict=True):
        event.id = final_event_id(ended.name, kind)
    return events


def final_event_id(run: str, kind: str) -> str:
    """The id of a run's final event of `kind` ("changed", "finished"): the
    same wherever it is made, since a run ends once. An end told twice (by
    its runner, and by the supervisor that found it missing from the log)
    is then stored and delivered once."""
    return f"end-{kind}-{uuid.uuid5(uuid.NAMESPACE_URL, run).hex}"


def queued_events(queued: run_pb2.Run, previous: c.RunState, message: str) -> list[event_pb2.Event]:
    """RunStateChanged (from `previous`) and RunQueued of a run just put in
    the queue: `queued` is the run as storage answered the change."""
    changed = event_pb2.RunStateChanged(previous_state=previous, state=QUEUED, message=message)
    waiting = event_pb2.RunQueued(position=queued.queue_position, takeovers=queued.takeovers, message=message)
    return [
        run_event(queued.name, queued.experiment, run_state_changed=changed),
        run_event(queued.name, queued.experiment, run_queued=waiting),
    ]


def stopping_events(stopping: run_pb2.Run, reason: c.StopReason, message: str) -> list[event_pb2.Event]:
    """StopRequested and RunStateChanged (RUNNING -> STOPPING) of a run just
    asked to stop: `stopping` is the run as storage answered the change."""
    asked = event_pb2.StopRequested(reason=reason, message=message)
    changed = event_pb2.RunStateChanged(previous_state=RUNNING, state=STOPPING, stop_reason=reason, message=message)
    return [
        run_event(stopping.name, stopping.experiment, stop_requested=asked),
        run_event(stopping.name, stopping.experiment, run_state_changed=changed),
    ]
