"""A run's lifecycle (automl.common.runs): storage allows exactly the state
changes of the table, on a real repository (SQLite), and the final events of a
run carry what the run holds."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import update

from automl.common import errors, events, runs, status
from automl.common.runs import ACTIVE_STATES, TERMINAL_STATES, final_state
from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2
from services.storage import db, schema
from services.storage.repository import MetadataStore, StoredContent
from services.storage.schema import utcnow

TENANT = "lifecycle"
STATES = sorted(runs.STATES)


@dataclass
class Store:
    repository: MetadataStore
    experiment: str

    def run_in(self, state: int) -> str:
        """A new run put straight into `state` (a write past the table: any state can be a start)."""
        run_id = self.repository.create_run(TENANT, self.experiment, {"maxModels": 10}, 1).id
        now = utcnow()
        values: dict[str, object] = {"state": state}
        if state != c.RUN_STATE_PENDING:  # it ran, or was queued after running
            values |= {"start_time": now, "claim_time": now, "heartbeat_time": now, "queue_time": now}
        if state in (c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING):
            values["runner_id"] = "runner-1"
        if runs.is_terminal(state):
            values["end_time"] = now
        with self.repository.engine.begin() as connection:
            connection.execute(update(schema.Run).where(schema.Run.id == run_id).values(**values))
        return run_id

    def get(self, run_id: str) -> run_pb2.Run:
        return self.repository.get_run(TENANT, run_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder: Path = tmp_path_factory.mktemp("lifecycle")
    engine = db.make_engine(f"sqlite:///{folder / 'metadata.db'}")
    db.upgrade(engine)
    repository = MetadataStore(engine)
    csv = b"x,label\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(20))
    content = StoredContent(hashlib.sha256(csv).hexdigest(), len(csv), inline_data=csv)
    columns = [
        {"name": "x", "index": 0, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "20"},
        {"name": "label", "index": 1, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "2"},
    ]
    dataset, _ = repository.create_dataset(
        TENANT, display_name="d", description="", csv_options={}, content=content, row_count=20, columns=columns
    )
    experiment = repository.create_experiment(
        TENANT, experiment_id="lifecycle", dataset_id=dataset.id, display_name="", description="",
        target_column="label", task=c.TASK_CLASSIFICATION, primary_metric=0, cv_folds=2, holdout_fraction=0.2,
        seed=0, allowed_model_families=[], excluded_columns=[], default_stop_conditions={},
    )  # fmt: skip
    yield Store(repository, experiment.id)
    engine.dispose()


def name(state: int) -> str:
    return c.RunState.Name(state).removeprefix("RUN_STATE_")


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize(("previous", "state"), list(itertools.product(STATES, STATES)), ids=lambda s: name(s))
def test_storage_allows_exactly_the_changes_of_the_table(store: Store, previous: int, state: int):
    run_id = store.run_in(previous)
    before = store.get(run_id)
    assert before.state == previous
    if runs.can_change(previous, state):
        changed, _ = store.repository.update_run_state(
            TENANT, run_id, expected=[previous], state=state, stop_reason=c.STOP_REASON_USER, runner_id="runner-2"
        )
        assert changed.state == state
        assert store.get(run_id).state == state
        return
    with pytest.raises(errors.FailedPrecondition) as refused:
        store.repository.update_run_state(
            TENANT, run_id, expected=[previous], state=state, stop_reason=c.STOP_REASON_USER, runner_id="runner-2"
        )
    assert status.CODES[type(refused.value)] is grpc.StatusCode.FAILED_PRECONDITION
    assert f"runs/{run_id} cannot change from {c.RunState.Name(previous)} to {c.RunState.Name(state)}" in str(
        refused.value
    )
    assert store.get(run_id) == before, "a refused change leaves the row as it was"


def test_a_change_never_allowed_is_refused_whatever_state_the_run_is_in(store: Store):
    """PENDING -> RUNNING is allowed, but the caller also names SUCCEEDED as a
    state to leave for RUNNING: its request is wrong, even if the run is PENDING."""
    run_id = store.run_in(c.RUN_STATE_PENDING)
    before = store.get(run_id)
    with pytest.raises(errors.FailedPrecondition, match="RUN_STATE_SUCCEEDED is final"):
        store.repository.update_run_state(
            TENANT, run_id, expected=[c.RUN_STATE_PENDING, c.RUN_STATE_SUCCEEDED], state=c.RUN_STATE_RUNNING
        )
    assert store.get(run_id) == before


def test_the_compare_and_set_still_refuses_a_run_in_another_state(store: Store):
    """An allowed change, asked of a run that is not in `expected`: a second runner's claim."""
    run_id = store.run_in(c.RUN_STATE_RUNNING)
    before = store.get(run_id)
    with pytest.raises(errors.FailedPrecondition, match="is RUN_STATE_RUNNING, not RUN_STATE_PENDING"):
        store.repository.update_run_state(TENANT, run_id, expected=[c.RUN_STATE_PENDING], state=c.RUN_STATE_RUNNING)
    assert store.get(run_id) == before


@pytest.mark.parametrize(
    ("expected", "state", "field"),
    [([c.RUN_STATE_RUNNING], 99, "state"), ([c.RUN_STATE_UNSPECIFIED], c.RUN_STATE_RUNNING, "expected_states")],
)
def test_a_state_that_does_not_exist_is_an_invalid_argument(store: Store, expected: list[int], state: int, field: str):
    run_id = store.run_in(c.RUN_STATE_RUNNING)
    with pytest.raises(errors.InvalidArgument) as wrong:
        store.repository.update_run_state(TENANT, run_id, expected=expected, state=state)
    assert wrong.value.violations[0].field == field


def test_the_table_agrees_with_the_stop_rules():
    """Terminal states are those no change leaves; every active state can end;
    no state changes to itself; final_state's answers are reachable ends."""
    assert set(TERMINAL_STATES) == runs.TERMINAL
    assert all(runs.is_terminal(s) for s in TERMINAL_STATES)
    assert not any(runs.is_terminal(s) for s in (*ACTIVE_STATES, c.RUN_STATE_UNSPECIFIED, 99))
    assert not any(runs.can_change(s, s) for s in STATES)
    for active in ACTIVE_STATES:
        assert any(runs.can_change(active, end) for end in TERMINAL_STATES), name(active)
    for reason in c.StopReason.values():
        for done in (0, 3):
            end = final_state(reason, done)
            assert runs.can_change(c.RUN_STATE_RUNNING, end) and runs.can_change(c.RUN_STATE_STOPPING, end)
            if reason == c.STOP_REASON_USER:  # StopRun of a run that waits
                assert runs.can_change(c.RUN_STATE_QUEUED, end)


# Every change the suite's code asks for today, by who asks it.
MADE_TODAY = [
    (c.RUN_STATE_PENDING, c.RUN_STATE_RUNNING),  # runner: the claim
    (c.RUN_STATE_QUEUED, c.RUN_STATE_RUNNING),  # runner: the claim of a dispatched run
    (c.RUN_STATE_PENDING, c.RUN_STATE_FAILED),  # runner: _refuse; supervisor: the queue is full
    (c.RUN_STATE_QUEUED, c.RUN_STATE_FAILED),  # runner: _refuse
    (c.RUN_STATE_PENDING, c.RUN_STATE_QUEUED),  # StartRun: no runner; supervisor: PENDING left by a dead gateway
    (c.RUN_STATE_PENDING, c.RUN_STATE_CANCELLED),  # StartRun: the runner's error, a full queue; StopRun
    (c.RUN_STATE_QUEUED, c.RUN_STATE_STOPPED),  # StopRun of a queued run with results
    (c.RUN_STATE_QUEUED, c.RUN_STATE_CANCELLED),  # StopRun of a queued run without
    (c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING),  # runner: request_stop; gateway: _stop_in_storage
    (c.RUN_STATE_RUNNING, c.RUN_STATE_QUEUED),  # supervisor: takeover; runner: hand-back
    *((c.RUN_STATE_RUNNING, end) for end in TERMINAL_STATES),  # runner: _end; supervisor: runner lost
    *((c.RUN_STATE_STOPPING, end) for end in TERMINAL_STATES),  # runner: _end; supervisor: runner lost
]


def test_every_change_made_today_is_allowed():
    assert [pair for pair in MADE_TODAY if not runs.can_change(*pair)] == []


def test_a_refusal_says_what_the_run_may_do():
    with pytest.raises(errors.FailedPrecondition) as ended:
        runs.check_change(c.RUN_STATE_SUCCEEDED, c.RUN_STATE_RUNNING, "runs/r")
    assert ended.value.message == (
        "runs/r cannot change from RUN_STATE_SUCCEEDED to RUN_STATE_RUNNING: RUN_STATE_SUCCEEDED is final, "
        "a run that ended never changes again (start a new run instead)"
    )
    with pytest.raises(errors.FailedPrecondition) as waiting:
        runs.check_change(c.RUN_STATE_PENDING, c.RUN_STATE_STOPPING)
    assert waiting.value.message == (
        "the run cannot change from RUN_STATE_PENDING to RUN_STATE_STOPPING: from RUN_STATE_PENDING a run may "
        "only go to RUN_STATE_RUNNING, RUN_STATE_FAILED, RUN_STATE_CANCELLED or RUN_STATE_QUEUED"
    )
    runs.check_change(c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING)


# ---------------------------------------------------------------- the events


def ended_run(state: int = c.RUN_STATE_SUCCEEDED) -> run_pb2.Run:
    run = run_pb2.Run(
        name="runs/r",
        experiment="experiments/e",
        state=state,
        stop_reason=c.STOP_REASON_MAX_MODELS,
        status_message="10 models evaluated (max_models 10)",
        models_evaluated=8,
        models_failed=1,
        models_stopped=1,
        best_model_result="runs/r/modelResults/7",
        best_score=0.93,
    )
    run.start_time.FromSeconds(1_000)
    run.end_time.FromSeconds(1_042)
    return run


def test_final_events_carry_what_the_run_holds():
    changed, finished = runs.final_events(ended_run(), c.RUN_STATE_STOPPING, "asked", c.STOP_REASON_TIME_BUDGET)
    assert {changed.run, finished.run} == {"runs/r"} and {changed.experiment, finished.experiment} == {"experiments/e"}
    assert changed.WhichOneof("payload") == "run_state_changed" and finished.WhichOneof("payload") == "run_finished"
    state_changed = changed.run_state_changed
    assert (state_changed.previous_state, state_changed.state) == (c.RUN_STATE_STOPPING, c.RUN_STATE_SUCCEEDED)
    assert state_changed.stop_reason == c.STOP_REASON_MAX_MODELS, "the stored (first) reason wins"
    assert state_changed.message == "asked"
    end = finished.run_finished
    assert end.state == c.RUN_STATE_SUCCEEDED and end.stop_reason == c.STOP_REASON_MAX_MODELS
    assert end.message == "10 models evaluated (max_models 10)"
    assert (end.models_evaluated, end.models_failed, end.models_stopped) == (8, 1, 1)
    assert end.best_model_result == "runs/r/modelResults/7" and end.HasField("best_score") and end.best_score == 0.93
    assert end.duration.ToTimedelta() == dt.timedelta(seconds=42)
    for event in (changed, finished):
        assert events.valid_event_id(event.id) and event.HasField("create_time")
    assert changed.id != finished.id
    # A run ends once: its end told twice (runner, then supervisor) carries the same ids, stored once.
    again = runs.final_events(ended_run(), c.RUN_STATE_RUNNING, "other", c.STOP_REASON_USER)
    assert [e.id for e in again] == [changed.id, finished.id]
    other = ended_run()
    other.name = "runs/s"
    assert not {e.id for e in runs.final_events(other, c.RUN_STATE_RUNNING, "")} & {changed.id, finished.id}


def test_final_events_of_a_run_that_never_started():
    """A run refused or cancelled while it waited: no duration, no best score;
    the reason asked for stands when none is stored."""
    run = run_pb2.Run(name="runs/r", experiment="experiments/e", state=c.RUN_STATE_FAILED, status_message="bad data")
    run.end_time.FromSeconds(1_000)
    changed, finished = runs.final_events(run, c.RUN_STATE_PENDING, "bad data", c.STOP_REASON_ERROR)
    assert changed.run_state_changed.stop_reason == c.STOP_REASON_ERROR
    end = finished.run_finished
    assert end.stop_reason == c.STOP_REASON_ERROR and end.message == "bad data"
    assert not end.HasField("duration") and not end.HasField("best_score") and end.best_model_result == ""


def test_a_run_that_did_not_end_has_no_final_events():
    with pytest.raises(ValueError, match="not ended"):
        runs.final_events(ended_run(state=c.RUN_STATE_STOPPING), c.RUN_STATE_RUNNING, "")


def test_queued_and_stopping_events():
    run = run_pb2.Run(name="runs/r", experiment="experiments/e", state=c.RUN_STATE_QUEUED, queue_position=3)
    run.takeovers = 1
    changed, queued = runs.queued_events(run, c.RUN_STATE_RUNNING, "runner lost")
    assert (changed.run_state_changed.previous_state, changed.run_state_changed.state) == (
        c.RUN_STATE_RUNNING,
        c.RUN_STATE_QUEUED,
    )
    assert (queued.run_queued.position, queued.run_queued.takeovers, queued.run_queued.message) == (3, 1, "runner lost")
    asked, changed = runs.stopping_events(run, c.STOP_REASON_USER, "stopped by the user")
    assert asked.stop_requested.reason == c.STOP_REASON_USER and asked.stop_requested.message == "stopped by the user"
    assert changed.run_state_changed.state == c.RUN_STATE_STOPPING
    assert changed.run_state_changed.stop_reason == c.STOP_REASON_USER
