"""Searches through the runner service: storage, notifier and runner as real
processes, real aikit candidates in real worker processes."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from automl.common.status import field_violations
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2, runner_service_pb2, storage_service_pb2
from tests.runner.conftest import Stack, mixed_table, seconds, sklearn_csv, to_csv

OK = run_pb2.ModelResult.OUTCOME_SUCCEEDED
CLASSIFICATION_METRICS = {
    c.METRIC_ACCURACY,
    c.METRIC_BALANCED_ACCURACY,
    c.METRIC_F1_MACRO,
    c.METRIC_ROC_AUC,
    c.METRIC_LOG_LOSS,
}


def kinds(events: list[event_pb2.Event]) -> list[str]:
    return [event_pb2.EventType.Name(e.type).removeprefix("EVENT_TYPE_") for e in events]


def failures(results: list[run_pb2.ModelResult]) -> list[str]:
    return [f"{r.model_family}: {r.error_message}" for r in results if r.outcome != OK]


@pytest.mark.slow
def test_breast_cancer_search_of_15_candidates(stack: Stack):
    """aikit on the pinned stack through the service: 15 candidates, none
    failing, each stored with aikit's per-fold table and published, then the
    ensemble of the best as a 16th entry."""
    experiment = stack.experiment(sklearn_csv("breast_cancer"), "target", seed=3)
    run = stack.new_run(experiment, workers=2, max_models=15)
    claimed = stack.execute(run)
    assert claimed.state == c.RUN_STATE_RUNNING and claimed.runner_id
    end = stack.wait_end(run)
    assert (end.state, end.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_MAX_MODELS)
    results = stack.results(run)
    assert len(results) == end.models_evaluated + end.models_failed == 16
    assert failures(results) == []
    assert sorted(r.index for r in results) == list(range(1, 17))
    assert [r.job_type for r in sorted(results, key=lambda r: r.index)][-1] == "ensemble"
    assert end.best_score > 0.9
    first = min(results, key=lambda r: r.index)
    assert first.folds_run == 3 and [f.fold_nb for f in first.folds] == [0, 1, 2]
    columns = set(first.folds[0].values)
    assert {"fit_time", "score_time", "n_test_samples", "test_accuracy", "train_accuracy"} <= columns
    assert {"test_log_loss_patched", "test_avg_roc_auc", "test_f1_macro", "test_balanced_accuracy"} <= columns
    assert {m.metric for m in first.metrics} == CLASSIFICATION_METRICS
    accuracy = next(m for m in first.metrics if m.metric == c.METRIC_ACCURACY)
    assert first.primary_score == pytest.approx(accuracy.mean)
    log_loss = next(m for m in first.metrics if m.metric == c.METRIC_LOG_LOSS)
    assert log_loss.mean > 0  # natural units: a loss, not aikit's negated score
    decoded = json.loads(first.model_json)
    assert decoded["__type__"] == "__tuple__"  # aikit's on-disk encoding
    assert first.model_family in {
        "LogisticRegression",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "LGBMClassifier",
    }
    events = stack.finished_events(run)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert kinds(events)[:2] == ["RUN_STATE_CHANGED", "RUN_STARTED"]
    assert kinds(events).count("MODEL_EVALUATED") == 16
    assert kinds(events)[-1] == "RUN_FINISHED"
    evaluated = [e.model_evaluated for e in events if e.HasField("model_evaluated")]
    assert [e.models_evaluated for e in evaluated] == list(range(1, 17))
    assert evaluated[-1].best_score == pytest.approx(end.best_score)
    assert sum(e.is_new_best for e in evaluated) >= 1
    finished = events[-1].run_finished
    assert finished.stop_reason == c.STOP_REASON_MAX_MODELS and finished.models_evaluated == 16


@pytest.mark.slow
def test_mixed_types_with_names_lightgbm_refuses(stack: Stack):
    """Numbers, categories, free text, missing values; the split is recorded."""
    experiment = stack.experiment(to_csv(mixed_table(300)), "label", seed=11, holdout_fraction=0.25)
    run = stack.new_run(experiment, workers=2, max_models=6)
    stack.execute(run)
    end = stack.wait_end(run)
    assert end.state == c.RUN_STATE_SUCCEEDED
    assert failures(stack.results(run)) == []
    started = next(e.run_started for e in stack.events(run) if e.HasField("run_started"))
    assert started.feature_columns == ["amount: eur", "colour[main]", "note", "ratio,x"]
    assert started.holdout_rows == 76 and started.search_rows == 224  # 25 % of each class of 150, rounded up
    chunks = stack.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=started.split_artifact))
    split = json.loads(b"".join(m.chunk for m in chunks))
    assert len(split["holdout_rows"]) == 76 and split["seed"] == 11
    assert split["feature_columns"]["amount_eur"] == "amount: eur"


@pytest.mark.slow
def test_regression_and_allowed_families(stack: Stack):
    experiment = stack.experiment(
        sklearn_csv("diabetes"), "target", task=c.TASK_REGRESSION, allowed_model_families=["Ridge", "LGBMRegressor"]
    )
    run = stack.new_run(experiment, workers=1, max_models=4)
    stack.execute(run)
    end = stack.wait_end(run)
    results = stack.results(run)
    assert end.state == c.RUN_STATE_SUCCEEDED and failures(results) == []
    assert {r.model_family for r in results} <= {"Ridge", "LGBMRegressor"}
    assert {m.metric for m in results[0].metrics} == {c.METRIC_R2, c.METRIC_RMSE, c.METRIC_MAE}
    rmse = next(m for m in results[0].metrics if m.metric == c.METRIC_RMSE)
    assert rmse.mean > 1  # in the target's units, positive


@pytest.mark.slow
def test_same_seed_same_leaderboard(stack: Stack):
    """With one worker, a seed fixes the leaderboard: the portfolio, guided
    candidates, racing and the ensemble included."""
    data = sklearn_csv("iris")
    boards = []
    for _ in range(2):
        experiment = stack.experiment(data, "target", seed=5)
        run = stack.new_run(experiment, workers=1, max_models=13)
        stack.execute(run)
        assert stack.wait_end(run).state == c.RUN_STATE_SUCCEEDED
        results = sorted(stack.results(run), key=lambda r: r.index)
        boards.append([(r.job_id, r.job_type, r.folds_run, round(r.primary_score, 9)) for r in results])
    assert len(boards[0]) == 14 and len({entry[0] for entry in boards[0]}) == 14
    assert {entry[1] for entry in boards[0]} >= {"portfolio", "ensemble"}
    assert boards[0] == boards[1]


@pytest.mark.slow
def test_user_stop_interrupts_within_the_grace_period(stack: Stack):
    experiment = stack.experiment(to_csv(slow_table()), "label", allowed_model_families=["RandomForestClassifier"])
    run = stack.new_run(experiment, workers=2, max_models=100)
    stack.execute(run)
    deadline = time.monotonic() + 60
    while stack.get(run).models_evaluated < 1 and time.monotonic() < deadline:  # not CANCELLED: a result kept
        time.sleep(0.1)
    stopping = stack.runner.StopExecution(
        runner_service_pb2.StopExecutionRequest(
            name=run.name, reason=c.STOP_REASON_USER, message="enough", grace_period=seconds(0.5)
        ),
        timeout=30,
    )
    asked = time.monotonic()
    assert stopping.state == c.RUN_STATE_STOPPING
    end = stack.wait_end(run, timeout=60)
    assert time.monotonic() - asked < 0.5 + 5
    assert (end.state, end.stop_reason, end.status_message) == (c.RUN_STATE_STOPPED, c.STOP_REASON_USER, "enough")
    events = stack.finished_events(run)
    assert "STOP_REQUESTED" in kinds(events) and kinds(events)[-1] == "RUN_FINISHED"
    assert events[-1].run_finished.state == c.RUN_STATE_STOPPED


def slow_table(rows: int = 6000):
    """A table on which a random forest takes seconds per fold."""
    frame = mixed_table(rows, seed=1).drop(columns=["note"])
    for i in range(30):
        frame[f"x{i}"] = frame["ratio,x"] * i + (frame.index % (i + 7))
    return frame


@pytest.mark.slow
def test_per_model_time_limit_kills_the_worker_and_the_run_goes_on(stack: Stack):
    experiment = stack.experiment(to_csv(slow_table()), "label", allowed_model_families=["RandomForestClassifier"])
    run = stack.new_run(experiment, workers=2, max_models=4, per_model_time_limit=seconds(1))
    started = time.monotonic()
    stack.execute(run)
    end = stack.wait_end(run, timeout=60)
    assert (end.state, end.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_MAX_MODELS)
    results = stack.results(run)
    assert len(results) == 4
    timed_out = [r for r in results if r.outcome == run_pb2.ModelResult.OUTCOME_TIMED_OUT]
    assert timed_out, [r.error_message for r in results]
    assert all("time limit of 1 s" in r.error_message for r in timed_out)
    assert time.monotonic() - started < 4 * 1.5 + 15
    failed = [e.model_failed for e in stack.events(run) if e.HasField("model_failed")]
    assert {f.outcome for f in failed} == {run_pb2.ModelResult.OUTCOME_TIMED_OUT}


@pytest.mark.slow
def test_time_budget_and_target_score(stack: Stack):
    experiment = stack.experiment(to_csv(slow_table(3000)), "label")
    budget = stack.new_run(experiment, workers=2, max_duration=seconds(6))
    started = time.monotonic()
    stack.execute(budget)
    end = stack.wait_end(budget, timeout=60)
    assert (end.state, end.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_TIME_BUDGET)
    assert time.monotonic() - started < 6 + 2 + 3  # budget + grace + slack of the poll

    target = stack.new_run(
        stack.experiment(sklearn_csv("breast_cancer"), "target"), workers=1, target_score=0.5, max_models=50
    )
    stack.execute(target)
    end = stack.wait_end(target)
    assert (end.state, end.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_TARGET_SCORE)
    assert end.models_evaluated == 1 and "reached by modelResults/" in end.status_message


# ------------------------------------------------------------------ refusals


def refused(stack: Stack, run: run_pb2.Run) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stack.execute(run)
    return caught.value


def assert_refused(stack: Stack, run: run_pb2.Run, field: str, text: str) -> None:
    error = refused(stack, run)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert text in error.details()
    assert [v.field for v in field_violations(error)] == [field]
    after = stack.get(run)
    assert (after.state, after.stop_reason) == (c.RUN_STATE_FAILED, c.STOP_REASON_ERROR)  # never left PENDING
    assert text in after.status_message
    assert kinds(stack.events(run)) == ["RUN_STATE_CHANGED", "RUN_FINISHED"]


def test_constant_features_are_refused_when_the_run_starts(stack: Stack):
    frame = mixed_table(120)[["label"]].assign(a=1.0, b="same")
    run = stack.new_run(stack.experiment(to_csv(frame), "label"), max_models=3)
    assert_refused(stack, run, "dataset", "every feature column is constant")


def test_unknown_model_families_are_refused_when_the_run_starts(stack: Stack):
    experiment = stack.experiment(
        sklearn_csv("iris"), "target", allowed_model_families=["RandomForestClassifier", "Magic"]
    )
    assert_refused(stack, stack.new_run(experiment, max_models=3), "experiment.allowed_model_families", "Magic")


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"task": c.TASK_REGRESSION}, "regression needs a numeric target"),
        ({"target_column": "nowhere"}, "'nowhere' is not a column"),
    ],
)
def test_problems_storage_sees_are_refused_at_experiment_creation(stack: Stack, fields, text):
    frame = mixed_table(60)
    arguments = {"target": fields.pop("target_column", "label"), **fields}
    with pytest.raises(grpc.RpcError) as caught:
        stack.experiment(to_csv(frame), arguments.pop("target"), **arguments)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in caught.value.details()


def test_one_class_and_empty_targets_are_refused_at_experiment_creation(stack: Stack):
    for label, text in (("yes", "one class only"), ("", "no value on any row")):
        frame = mixed_table(60).assign(label=label)
        with pytest.raises(grpc.RpcError) as caught:
            stack.experiment(to_csv(frame), "label")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in caught.value.details()


def test_negative_limits_are_refused_at_run_creation(stack: Stack):
    experiment = stack.experiment(sklearn_csv("iris"), "target")
    for conditions in ({"max_models": -1}, {"max_models": 2, "per_model_time_limit": seconds(-1)}, {}):
        with pytest.raises(grpc.RpcError) as caught:
            stack.new_run(experiment, **conditions)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stack.new_run(experiment, workers=-2, max_models=2)
    assert "parallel_workers" in caught.value.details()


def test_execute_and_stop_answer_clear_errors(stack: Stack):
    for name, code in (("nonsense", grpc.StatusCode.INVALID_ARGUMENT), ("runs/absent", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as caught:
            stack.runner.ExecuteRun(runner_service_pb2.ExecuteRunRequest(name=name), timeout=30)
        assert caught.value.code() == code
    with pytest.raises(grpc.RpcError) as caught:
        stack.runner.StopExecution(
            runner_service_pb2.StopExecutionRequest(name="runs/absent", reason=c.STOP_REASON_USER), timeout=30
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stack.runner.StopExecution(runner_service_pb2.StopExecutionRequest(name="runs/absent"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in caught.value.details()


@pytest.mark.slow
def test_capacity_claims_and_status(stack: Stack):
    experiment = stack.experiment(to_csv(slow_table(3000)), "label", allowed_model_families=["RandomForestClassifier"])
    busy = stack.new_run(experiment, workers=2, max_models=50)
    waiting = stack.new_run(experiment, workers=1, max_models=2)
    stack.execute(busy)
    status = stack.runner.GetRunnerStatus(runner_service_pb2.GetRunnerStatusRequest(), timeout=30)
    assert status.max_workers == 2 and status.busy_workers == 2 and status.aikit_version == "0.2.2"
    assert [a.run for a in status.active_runs] == [busy.name]
    error = refused(stack, waiting)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "0 of 2 workers free" in error.details()
    assert stack.get(waiting).state == c.RUN_STATE_PENDING  # may go to another runner
    with pytest.raises(grpc.RpcError) as caught:
        stack.execute(busy)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stack.runner.StopExecution(
        runner_service_pb2.StopExecutionRequest(name=busy.name, reason=c.STOP_REASON_USER, grace_period=seconds(0)),
        timeout=30,
    )
    stack.wait_end(busy, timeout=60)
    # A run shown ended has given its workers back: the next one may start at once.
    status = stack.runner.GetRunnerStatus(runner_service_pb2.GetRunnerStatusRequest(), timeout=30)
    assert status.busy_workers == 0
    stack.execute(waiting)
    assert stack.wait_end(waiting).state == c.RUN_STATE_SUCCEEDED
