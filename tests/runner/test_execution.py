"""One run's search in-process, with real workers and an in-memory recorder:
what the run's end promises to whoever reads it."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence
from pathlib import Path

import sklearn.datasets
from google.protobuf import duration_pb2

from automl.common.stopping import Limits
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2
from services.runner import scoring
from services.runner.candidates import Candidate, Candidates
from services.runner.execution import Execution, Job
from services.runner.workers import Pool
from tests.runner.conftest import TERMINAL


class Recorder:
    """Keeps the run in memory, and what the pool looked like when its end was written."""

    def __init__(self, run: run_pb2.Run, pool: Pool, freed: list[bool]) -> None:
        self.run = run
        self.pool = pool
        self.freed = freed
        self.at_end: dict[str, object] = {}
        self.processes: set[object] = set()
        self.published: list[list[event_pb2.Event]] = []  # one list per publish()

    async def set_state(self, expected: Sequence[int], state: int, reason: int = 0, message: str = "") -> run_pb2.Run:
        assert self.run.state in expected
        if state in TERMINAL:
            self.at_end = {
                "freed": list(self.freed),
                "workers_alive": [p for p in self.processes if p.is_alive()],  # type: ignore[attr-defined]
            }
            self.run.end_time.GetCurrentTime()
        self.run.state, self.run.stop_reason, self.run.status_message = state, reason, message
        return self.run

    async def heartbeat(self) -> run_pb2.Run:
        return self.run

    async def store_result(self, result: run_pb2.ModelResult) -> tuple[run_pb2.ModelResult, run_pb2.Run]:
        self.processes |= {w.process for w in [*self.pool.idle, *self.pool.busy]}
        if result.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED:
            self.run.models_evaluated += 1
        elif result.outcome == run_pb2.ModelResult.OUTCOME_INTERRUPTED:
            self.run.models_stopped += 1
        else:
            self.run.models_failed += 1
        result.name = f"{self.run.name}/modelResults/{result.index}"
        return result, self.run

    async def publish(self, events: list[event_pb2.Event]) -> None:
        self.published.append(list(events))

    async def add_notes(self, notes: list[str]) -> None:
        self.run.notes.extend(notes)

    async def keep_predictions(self, predictions: object) -> str:
        return ""


def search(
    tmp_path: Path, X: object, y: object, family: str, folds: int, max_models: int, grace: float, freed: list[bool]
) -> tuple[Execution, Pool, Recorder, run_pb2.Run]:
    """A classification run of one model family, with 2 real workers and the in-memory recorder."""
    data = tmp_path / "data.pkl"
    data.write_bytes(pickle.dumps((X, y)))
    scorers = scoring.scorers(c.TASK_CLASSIFICATION, c.METRIC_ACCURACY)
    names = [s.name for s in scorers]
    candidates = Candidates(X, y, c.TASK_CLASSIFICATION, [family], names, folds, 0, tmp_path / "aikit")  # type: ignore[arg-type]
    pool = Pool(2, str(data), {"classification": True, "folds": folds, "seed": 0, "scorers": names})
    run = run_pb2.Run(name="runs/r1", experiment="experiments/e1", state=c.RUN_STATE_RUNNING)
    run.primary_metric = c.METRIC_ACCURACY
    run.start_time.GetCurrentTime()
    recorder = Recorder(run, pool, freed)
    execution = Execution(
        run=run,
        limits=Limits.of(c.StopConditions(max_models=max_models), 60),
        scorers=scorers,
        candidates=candidates,
        pool=pool,
        recorder=recorder,
        grace=grace,
        memory_limit=2**30,
        heartbeat_seconds=5,
        workers_freed=lambda: freed.append(True),
    )
    return execution, pool, recorder, run


def payloads(recorder: Recorder) -> list[list[str]]:
    return [[str(e.WhichOneof("payload")) for e in batch] for batch in recorder.published]


def test_workers_are_gone_and_freed_before_the_end_is_written(tmp_path: Path):
    """A client that sees the run ended may start the next one on the same
    runner at once (CI once caught RESOURCE_EXHAUSTED there)."""
    X, y = sklearn.datasets.load_iris(return_X_y=True, as_frame=True)
    freed: list[bool] = []
    execution, _, recorder, run = search(tmp_path, X, y, "LogisticRegression", 3, 2, 2, freed)
    asyncio.run(execution.execute())
    assert run.state == c.RUN_STATE_SUCCEEDED and run.models_evaluated == 2
    assert recorder.at_end == {"freed": [True], "workers_alive": []}
    assert freed == [True] and recorder.processes
    batches = payloads(recorder)
    # Each result at once while searching (two that end in the same moment, together).
    assert batches[:-2] in ([["model_evaluated"], ["model_evaluated"]], [["model_evaluated", "model_evaluated"]])
    assert batches[-2:] == [["stop_requested", "run_state_changed"], ["run_state_changed", "run_finished"]]


def test_candidates_interrupted_together_are_told_in_one_message(tmp_path: Path):
    """A stop kills every candidate under way at once: their results go out in
    one Publish (one message to every watcher, not one per candidate)."""
    X, y = sklearn.datasets.load_digits(return_X_y=True, as_frame=True)
    # The portfolio's forest (300 trees, 5 folds): seconds each, under way when the stop comes.
    execution, pool, recorder, run = search(tmp_path, X, y, "RandomForestClassifier", 5, 10, 0, [])

    async def scenario() -> None:
        searching = asyncio.create_task(execution.execute())
        for _ in range(600):
            if len(pool.busy) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(pool.busy) == 2 and not recorder.published
        await execution.request_stop(c.STOP_REASON_USER, "stopped by the test", grace=0)
        await searching

    asyncio.run(scenario())
    assert run.state == c.RUN_STATE_CANCELLED and run.models_stopped == 2
    assert payloads(recorder) == [
        ["stop_requested", "run_state_changed"],
        ["model_failed", "model_failed"],  # both interrupted: one message
        ["run_state_changed", "run_finished"],
    ]


def bare(limits: Limits) -> tuple[Execution, Recorder, run_pb2.Run]:
    """An execution with no candidates and no pool: nothing is evaluated."""
    run = run_pb2.Run(name="runs/r1", experiment="experiments/e1", state=c.RUN_STATE_RUNNING)
    run.start_time.GetCurrentTime()
    recorder = Recorder(run, None, [])  # type: ignore[arg-type]
    execution = Execution(
        run=run,
        limits=limits,
        scorers=[],
        candidates=None,  # type: ignore[arg-type]
        pool=None,  # type: ignore[arg-type]
        recorder=recorder,
        grace=2,
        memory_limit=2**30,
        heartbeat_seconds=5,
    )
    return execution, recorder, run


def test_a_candidate_gets_a_tighter_limit_under_a_budget_once_its_family_was_timed():
    """aikit draws pipelines whose steps cost far more than their model: on
    titanic two, predicted at about a second, held both workers for the last
    37 s of a 60 s run. Under a budget a candidate may take 5 times its
    predicted time, a quarter of the budget or 10 s, whichever is longest."""
    budget = c.StopConditions(max_duration=duration_pb2.Duration(seconds=60))
    execution, _, _ = bare(Limits.of(budget, 300))
    lgbm = Candidate("j1", "exploration", {}, "", "LGBMClassifier", [], work=0.5)
    job = Job(1, lgbm, 0, 500)
    assert execution._overrun_limit(job) is None  # nothing measured of its family
    execution.durations.record("RandomForestClassifier", 1000, 2.0)
    assert execution._overrun_limit(job) is None  # other families are no guide
    execution.durations.record("LGBMClassifier", 1500, 4.5)  # 3 ms a unit: 0.75 s predicted
    assert execution._overrun_limit(job) == 15.0  # a quarter of the budget
    slow = Job(2, Candidate("j2", "exploration", {}, "", "LGBMClassifier", [], work=10), 0, 500)
    assert execution._overrun_limit(slow) == 75.0  # 5 times the 15 s predicted
    tight, _, _ = bare(
        Limits.of(c.StopConditions(max_duration=budget.max_duration, per_model_time_limit=budget.max_duration), 300)
    )
    tight.durations = execution.durations
    assert tight._overrun_limit(slow) is None  # the run's own per-model limit (60 s) is tighter
    short, _, _ = bare(Limits.of(c.StopConditions(max_duration=duration_pb2.Duration(seconds=20)), 300))
    short.durations = execution.durations
    assert short._overrun_limit(job) == 10.0  # never under 10 s
    unbounded, _, _ = bare(Limits.of(c.StopConditions(max_models=10), 300))
    unbounded.durations = execution.durations
    assert unbounded._overrun_limit(job) is None  # no budget, no such limit


def test_once_the_search_is_over_its_events_go_out_with_the_end():
    """The ensemble comes a few milliseconds before the run's end: one message
    to every watcher rather than two (with a thousand watchers, the end queued
    behind the ensemble's fan-out)."""
    execution, recorder, run = bare(Limits.of(c.StopConditions(max_models=2), 60))

    def note(text: str) -> event_pb2.Event:
        return event_pb2.Event(run=run.name, run_note=event_pb2.RunNote(message=text))

    def kinds() -> list[list[str]]:
        return [[e.run_note.message or str(e.WhichOneof("payload")) for e in b] for b in recorder.published]

    async def scenario() -> None:
        await execution._publish([note("searching")])
        assert kinds() == [["searching"]]  # at once
        execution.ending = True  # as execute() does once the pool is closed
        await execution._publish([note("ensemble")])
        assert kinds() == [["searching"]]  # held
        await execution._end(c.RUN_STATE_SUCCEEDED, c.STOP_REASON_MAX_MODELS, "")
        assert kinds() == [["searching"], ["ensemble", "run_state_changed", "run_finished"]]

    asyncio.run(scenario())
