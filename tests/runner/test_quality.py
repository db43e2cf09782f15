"""The search as users run it: default settings and a time budget, through
the runner service (storage, notifier and runner as real processes). Each
run is long enough to reach aikit's guided phase (past ten results), where
easy tables used to fail."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2, storage_service_pb2
from tests.runner.conftest import Stack, mixed_table, seconds, shared_csv, sklearn_csv, to_csv
from tests.runner.test_models import predict_csv, train

pytestmark = pytest.mark.slow
OK = run_pb2.ModelResult.OUTCOME_SUCCEEDED
BUDGET = 10.0


def default_run(stack: Stack, data: bytes, target: str, budget: float = BUDGET, **fields: object) -> run_pb2.Run:
    """A run with the experiment's defaults (5 folds, every family) and a time budget."""
    experiment = stack.experiment(data, target, cv_folds=0, **fields)
    run = stack.new_run(experiment, workers=2, max_duration=seconds(budget))
    stack.execute(run)
    return stack.wait_end(run, timeout=budget * 3 + 30)


def oof_predictions(stack: Stack, artifact: str) -> np.ndarray:
    chunks = stack.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=artifact), timeout=30)
    return np.load(io.BytesIO(b"".join(m.chunk for m in chunks)))["predictions"]


def duration(run: run_pb2.Run) -> float:
    return (run.end_time.ToNanoseconds() - run.start_time.ToNanoseconds()) / 1e9


def assert_on_time(run: run_pb2.Run, budget: float = BUDGET) -> None:
    assert (run.state, run.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_TIME_BUDGET), run.status_message
    assert duration(run) <= budget * 1.05 + 1, f"{duration(run):.2f} s for a budget of {budget} s"


def test_iris_with_defaults_ends_on_time_with_an_ensemble_that_trains_and_predicts(stack: Stack):
    run = default_run(stack, sklearn_csv("iris"), "target")
    assert_on_time(run)
    results = stack.results(run)
    done = [r for r in results if r.outcome == OK]
    assert len(done) > 10, "the guided phase starts past ten results"
    assert [r.job_type for r in results[:3]] == ["portfolio"] * 3
    assert not [r.error_message for r in results if r.outcome == run_pb2.ModelResult.OUTCOME_FAILED]
    assert run.models_stopped == sum(r.outcome == run_pb2.ModelResult.OUTCOME_INTERRUPTED for r in results)
    # The ensemble: its members and weights, a cross-validated score, and a model like any other.
    (entry,) = [r for r in results if r.job_type == "ensemble"]
    assert len(entry.ensemble_members) >= 2 and abs(sum(m.weight for m in entry.ensemble_members) - 1) < 1e-6
    members = {r.name: r for r in results}
    assert all(members[m.model_result].folds_run == 5 for m in entry.ensemble_members)
    assert entry.folds_run == 5 and entry.primary_score > 0.9
    # Every complete result keeps its out-of-fold predictions, from which the ensemble can be built again.
    complete = [r for r in done if r.folds_run == 5 and r.job_type != "ensemble"]
    assert all(r.predictions_artifact for r in complete)
    kept = oof_predictions(stack, members[entry.ensemble_members[0].model_result].predictions_artifact)
    assert kept.shape == (members[entry.ensemble_members[0].model_result].sample_rows, 3)
    assert np.allclose(kept.sum(axis=1), 1, atol=1e-3)
    model = train(stack, entry)
    assert model.state == model_pb2.TrainedModel.STATE_READY, model.error_message
    frame = pd.read_csv(io.BytesIO(sklearn_csv("iris")))
    answer = predict_csv(stack, model.name, frame.drop(columns=["target"]))
    predicted = np.array([float(p.label) for p in answer.predictions])
    assert (predicted == frame["target"].to_numpy()).mean() > 0.9


def test_a_table_where_every_model_scores_one(stack: Stack):
    rng = np.random.default_rng(3)
    label = rng.choice(["a", "b", "c"], 300)
    frame = pd.DataFrame({"code": pd.Series(label).map({"a": 1.0, "b": 2.0, "c": 3.0}), "noise": rng.normal(size=300)})
    frame["label"] = label
    run = default_run(stack, to_csv(frame), "label")
    assert_on_time(run)
    assert run.best_score == 1.0 and run.models_evaluated > 10


def test_small_classes_are_adapted_and_said_so(stack: Stack):
    frame = mixed_table(200)
    frame.loc[0, "label"] = "once"
    frame.loc[[1, 2, 3], "label"] = "rare"
    run = default_run(stack, to_csv(frame), "label", budget=6)
    assert_on_time(run, 6)
    assert run.models_evaluated > 3 and run.models_failed == 0, run.notes
    assert "kept whole in training" in run.notes[0] and "2-fold cross-validation instead of 5" in run.notes[1]
    said = [e.run_note.message for e in stack.events(run) if e.type == event_pb2.EVENT_TYPE_RUN_NOTE]
    assert said[:2] == list(run.notes[:2])


def test_glass_split_as_the_anchors_do(stack: Stack):
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(io.BytesIO(shared_csv("glass.csv")))
    train_part, _ = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame["Type"])
    run = default_run(stack, to_csv(train_part), "Type")
    assert_on_time(run)
    assert run.models_evaluated > 5 and run.best_score > 0.6


def test_a_stop_by_the_budget_counts_stopped_not_failed(stack: Stack):
    from tests.runner.test_search import slow_table

    started = time.monotonic()
    run = default_run(stack, to_csv(slow_table(3000)), "label", budget=4)
    assert time.monotonic() - started < 30
    assert_on_time(run, 4)
    results = stack.results(run)
    assert run.models_failed == sum(r.outcome == run_pb2.ModelResult.OUTCOME_FAILED for r in results) == 0
