"""The greedy ensemble's building blocks: out-of-fold predictions from the
worker, the folds they came from, metrics equal to aikit's scorers, forward
selection, the ensemble's score table, and the ensemble as a model that
builds, fits, pickles, round-trips as JSON, trains and tests like any other."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn.datasets
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_predict, train_test_split

from automl.v1 import common_pb2 as c
from services.runner import ensemble, predicting, scoring, worker
from services.runner.worker import Evaluator, build

CLASSIFICATION = [s.name for s in scoring.CLASSIFICATION]
REGRESSION = [s.name for s in scoring.REGRESSION]
FOREST = ("RandomForestClassifier", {"n_estimators": 15, "random_state": 0})
FOREST_REGRESSOR = ("RandomForestRegressor", {"n_estimators": 15, "random_state": 0})
LOGISTIC = ("LogisticRegression", {"C": 0.5, "solver": "liblinear"})


def iris() -> tuple[pd.DataFrame, pd.Series]:
    """Labels whose sorted order is not their order of appearance, and an
    index that is neither sorted nor 0..n-1."""
    data = sklearn.datasets.load_iris(as_frame=True)
    names = np.array(["zeta", "alpha", "mu"])
    index = np.random.default_rng(0).permutation(len(data.target)) + 1000
    X = data.data.set_axis(index)
    y = pd.Series(names[data.target.to_numpy()], index=index, name="target")
    return X, y


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    data = sklearn.datasets.load_breast_cancer(as_frame=True)
    return data.data, data.target


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    data = sklearn.datasets.load_diabetes(as_frame=True)
    return data.data, data.target


# ------------------------------------------------- out-of-fold predictions


def test_classifier_predictions_are_cross_val_predict_in_row_and_class_order():
    X, y = iris()
    scored = Evaluator(X, y, True, 5, 3, CLASSIFICATION).evaluate({"model_json": FOREST})
    assert len(scored.rows) == 5
    expected = cross_val_predict(build(FOREST), X, y, cv=ensemble.splitter(True, 5, 3), method="predict_proba")
    assert scored.predictions is not None
    assert scored.predictions.dtype == np.float32
    assert scored.predictions.shape == (150, 3)
    np.testing.assert_array_equal(scored.predictions, expected.astype(np.float32))
    classes = np.unique(y)
    assert list(classes) == ["alpha", "mu", "zeta"]
    assert np.mean(classes[scored.predictions.argmax(axis=1)] == y.to_numpy()) > 0.9


def test_regressor_predictions_are_one_value_per_row():
    X, y = diabetes()
    scored = Evaluator(X, y, False, 4, 1, REGRESSION).evaluate({"model_json": FOREST_REGRESSOR})
    expected = cross_val_predict(build(FOREST_REGRESSOR), X, y, cv=ensemble.splitter(False, 4, 1))
    assert scored.predictions is not None and scored.predictions.shape == (len(y),)
    np.testing.assert_array_equal(scored.predictions, expected.astype(np.float32))


def test_no_predictions_when_stopped_early_and_a_samples_own_on_a_sample():
    X, y = iris()
    evaluator = Evaluator(X, y, True, 5, 3, CLASSIFICATION)
    stopped = evaluator.evaluate({"model_json": FOREST, "stopping_round": 0, "stopping_threshold": 1.5})
    assert len(stopped.rows) == 1 and stopped.predictions is None
    positions = np.arange(0, 150, 2)
    sampled = evaluator.evaluate({"model_json": FOREST, "rows": positions})
    assert sampled.predictions is not None and sampled.predictions.shape == (len(positions), 3)
    assert sum(row["n_test_samples"] for row in sampled.rows) == 75
    # Same splitter, same seed, on the sampled rows only.
    direct = evaluator.evaluate({"model_json": FOREST, "rows": list(positions)})
    assert [r["test_accuracy"] for r in direct.rows] == [r["test_accuracy"] for r in sampled.rows]
    folds = ensemble.fold_assignment(y.iloc[positions], True, 5, 3)
    assert [r["n_test_samples"] for r in sampled.rows] == list(np.bincount(folds))


def test_fold_assignment_is_the_evaluators_split(monkeypatch: pytest.MonkeyPatch):
    X, y = iris()
    evaluator = Evaluator(X, y, True, 5, 3, CLASSIFICATION)
    folds = ensemble.fold_assignment(y, True, 5, 3)
    for k, (_, test) in enumerate(evaluator.cv.split(X, y)):
        assert (folds[test] == k).all()
    # Through aikit's cross-validation: a prior model predicts, for each row,
    # the class frequencies of the rows outside its fold.
    monkeypatch.setattr(worker, "build", lambda model: DummyClassifier(strategy="prior"))
    scored = evaluator.evaluate({"model_json": FOREST})
    labels = y.to_numpy()
    classes = np.unique(labels)
    expected = np.array([[np.mean(labels[folds != folds[i]] == c) for c in classes] for i in range(len(labels))])
    np.testing.assert_allclose(scored.predictions, expected, atol=1e-7)

    Xr, yr = diabetes()
    monkeypatch.setattr(worker, "build", lambda model: DummyRegressor())
    scored = Evaluator(Xr, yr, False, 4, 9, REGRESSION).evaluate({"model_json": FOREST_REGRESSOR})
    folds = ensemble.fold_assignment(yr, False, 4, 9)
    values = yr.to_numpy()
    expected = np.array([values[folds != f].mean() for f in folds])
    np.testing.assert_allclose(scored.predictions, expected, rtol=1e-6)


async def test_a_worker_process_sends_its_predictions(tmp_path: Path):
    from services.runner.workers import Outcome, Worker

    X, y = iris()
    data = tmp_path / "data.pkl"
    data.write_bytes(pickle.dumps((X, y)))
    setup = {"classification": True, "folds": 3, "seed": 2, "scorers": CLASSIFICATION, "nice": 7}
    process = Worker(str(data), setup)
    try:
        await process.ready()
        nice = int(Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        assert nice == os.nice(0) + 7  # below the runner's priority (AUTOML_RUNNER_WORKER_NICE)
        done = await process.evaluate("a", {"model_json": FOREST}, 60.0, 0)
        sampled = await process.evaluate("b", {"model_json": FOREST, "rows": np.arange(90)}, 60.0, 0)
    finally:
        process.close()
    assert done.outcome == Outcome.SUCCEEDED and len(done.rows or []) == 3
    assert done.predictions is not None and done.predictions.shape == (150, 3)
    assert sampled.outcome == Outcome.SUCCEEDED and sampled.predictions is not None
    assert sampled.predictions.shape == (90, 2)  # the sample's rows, and its classes


# ----------------------------------------------------------------- metrics


def fitted_scores(model: Any, X: pd.DataFrame, y: pd.Series, names: list[str], classification: bool) -> None:
    """metric_function on the model's predictions == aikit's scorer on the model."""
    from aikit.scorer import SCORERS

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
    model.fit(X_train, y_train)
    predictions = model.predict_proba(X_test) if classification else model.predict(X_test)
    classes = model.classes_ if classification else None
    for name in names:
        expected = SCORERS[name](model, X_test, y_test)
        got = ensemble.metric_function(name, classes)(y_test.to_numpy(), predictions)
        assert got == pytest.approx(expected, abs=1e-9), name
        # Out-of-fold predictions travel as float32.
        close = ensemble.metric_function(name, classes)(y_test, predictions.astype(np.float32))
        assert close == pytest.approx(expected, abs=1e-5), name


def test_metric_functions_equal_aikits_scorers():
    X, y = cancer()
    # A small forest: ties in probabilities, and zero probabilities for log loss.
    fitted_scores(RandomForestClassifier(n_estimators=5, random_state=0), X, y, CLASSIFICATION, True)
    fitted_scores(LogisticRegression(max_iter=5000), X, y, CLASSIFICATION, True)
    X, y = iris()
    fitted_scores(RandomForestClassifier(n_estimators=5, random_state=0), X, y, CLASSIFICATION, True)
    fitted_scores(LogisticRegression(max_iter=5000, C=0.05), X, y, CLASSIFICATION, True)
    X, y = diabetes()
    fitted_scores(Ridge(), X, y, REGRESSION, False)
    fitted_scores(RandomForestRegressor(n_estimators=5, random_state=0), X, y, REGRESSION, False)


def test_roc_auc_over_the_classes_present_as_aikit():
    from aikit.scorer import SCORERS

    X, y = iris()
    model = LogisticRegression(max_iter=5000, C=0.05).fit(X, y)
    missing = y != "mu"  # the test rows lack a class the model knows
    expected = SCORERS["avg_roc_auc"](model, X[missing], y[missing])
    got = ensemble.metric_function("avg_roc_auc", model.classes_)(y[missing], model.predict_proba(X[missing]))
    assert got == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError):
        ensemble.metric_function("avg_roc_auc", model.classes_)(y[y == "mu"], model.predict_proba(X[y == "mu"]))
    with pytest.raises(ValueError):
        ensemble.metric_function("accuracy", np.array(["alpha", "mu"]))(y, model.predict_proba(X)[:, :2])


# --------------------------------------------------------------- selection


def test_select_prefers_the_good_model_to_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    good = np.where(y[:, None] == [0, 1], 0.8, 0.2) + rng.normal(0, 0.05, (2000, 2))
    good = np.clip(good, 0.01, 0.99)
    good /= good.sum(axis=1, keepdims=True)
    noise = rng.dirichlet([1, 1], 2000)
    for name in ("log_loss_patched", "accuracy", "avg_roc_auc"):
        weights = ensemble.select([noise, good], y, ensemble.metric_function(name, np.array([0, 1])))
        assert weights == [0.0, 1.0], name
    # Ties go to the lowest index: a copy is never preferred.
    assert ensemble.select([good, good.copy()], y, ensemble.metric_function("accuracy", None)) == [1.0, 0.0]


def test_select_blends_complementary_models():
    y = np.tile([0, 1], 500)
    half = np.arange(1000) < 500
    right = np.where(half, 0.9, 0.4)  # probability of the true class
    other = np.where(half, 0.4, 0.9)
    a = np.column_stack([np.where(y == 0, right, 1 - right), np.where(y == 1, right, 1 - right)])
    b = np.column_stack([np.where(y == 0, other, 1 - other), np.where(y == 1, other, 1 - other)])
    metric = ensemble.metric_function("log_loss_patched", np.array([0, 1]))
    weights = ensemble.select([a, b, a * 0 + 0.5], y, metric)
    assert weights[0] > 0 and weights[1] > 0 and weights[2] == 0
    assert sum(weights) == pytest.approx(1.0)
    blended = ensemble.weighted_average([a, b, a], weights)
    assert metric(y, blended) > max(metric(y, a), metric(y, b)) + 0.05
    accuracy = ensemble.metric_function("accuracy", None)
    assert accuracy(y, blended) == 1.0 and accuracy(y, a) == 0.5


def test_select_regression():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, 500)
    high, low = y + 0.5, y - 0.5
    weights = ensemble.select([high, low, y + rng.normal(0, 3, 500)], y, ensemble.metric_function("r2", None))
    assert weights == [0.5, 0.5, 0.0]


# -------------------------------------------------------------- score table


def test_fold_rows_reproduce_a_candidates_cross_validation():
    X, y = iris()
    evaluator = Evaluator(X, y, True, 5, 3, CLASSIFICATION)
    scored = evaluator.evaluate({"model_json": LOGISTIC})
    folds = ensemble.fold_assignment(y, True, 5, 3)
    rows = ensemble.fold_rows(scored.predictions, y.to_numpy(), folds, CLASSIFICATION, np.unique(y))
    assert [r["fold_nb"] for r in rows] == [r["fold_nb"] for r in scored.rows]
    used = scoring.scorers(c.TASK_CLASSIFICATION, c.METRIC_ACCURACY)
    ours, aikits = scoring.summarize(rows, used), scoring.summarize(scored.rows, used)
    assert ours.folds_run == 5 and ours.score_time == 0.0
    for mine, theirs in zip(ours.metrics, aikits.metrics, strict=True):
        assert mine["metric"] == theirs["metric"]
        assert mine["mean"] == pytest.approx(theirs["mean"], abs=1e-6)
        assert mine["std"] == pytest.approx(theirs["std"], abs=1e-6)
        assert mine["train_mean"] is None
    for mine, theirs in zip(rows, scored.rows, strict=True):
        assert mine["n_test_samples"] == theirs["n_test_samples"]
        assert set(mine) == {f"test_{n}" for n in CLASSIFICATION} | {*scoring.FOLD_COLUMNS, "fold_nb"}


def test_fold_rows_mean_of_a_blend():
    rng = np.random.default_rng(3)
    y = rng.normal(0, 1, 300)
    folds = ensemble.fold_assignment(y, False, 3, 0)
    blended = y + rng.normal(0, 0.3, 300)
    rows = ensemble.fold_rows(blended, y, folds, REGRESSION, None, fit_time=2.0)
    summary = scoring.summarize(rows, scoring.scorers(c.TASK_REGRESSION, c.METRIC_RMSE))
    rmse = [np.sqrt(skm.mean_squared_error(y[folds == f], blended[folds == f])) for f in range(3)]
    assert summary.primary_score == pytest.approx(np.mean(rmse), abs=1e-12)
    assert summary.fit_time == 6.0


# -------------------------------------------------------------- the model

GRAPH = (
    "GraphPipeline",
    {
        "models": {"impute": ("NumImputer", {}), "forest": ("RandomForestClassifier", {"n_estimators": 10})},
        "edges": [("impute", "forest")],
    },
)


def round_trip(model: Any) -> Any:
    from aikit.tools.json_helper import json_decoder, json_encoder

    return json_decoder(json.loads(json.dumps(json_encoder(model))))


def test_an_ensemble_description_builds_fits_pickles_and_round_trips():
    X, y = cancer()
    members = [FOREST, LOGISTIC, GRAPH]
    description = ensemble.description(True, members, [0.6, 0.0, 0.4])
    assert description == ("GreedyEnsembleClassifier", {"models": [FOREST, GRAPH], "weights": [0.6, 0.4]})
    assert round_trip(description) == description
    model = build(round_trip(description))
    assert isinstance(model, ensemble.GreedyEnsembleClassifier)
    assert clone(model).get_params()["models"] == [FOREST, GRAPH]
    model.fit(X, y)
    assert all(value == 1 for e in model.estimators_ for key, value in e.get_params().items() if key.endswith("n_jobs"))
    forest, graph = build(FOREST).fit(X, y), build(GRAPH)
    proba = model.predict_proba(X)
    assert proba.shape == (len(y), 2) and list(model.classes_) == [0, 1]
    # The graph's forest is unseeded: compare with the ensemble's own member.
    expected = 0.6 * forest.predict_proba(X) + 0.4 * model.estimators_[1].predict_proba(X)
    np.testing.assert_allclose(proba, expected)
    assert isinstance(graph, type(model.estimators_[1]))
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(joblib.load(buffer).predict_proba(X), proba)

    # A class a member has not seen gets 0 from it, in the ensemble's column order.
    Xi, yi = iris()
    three = build(("GreedyEnsembleClassifier", {"models": [LOGISTIC], "weights": [1.0]})).fit(Xi, yi)
    assert list(three.classes_) == ["alpha", "mu", "zeta"]
    np.testing.assert_allclose(three.predict_proba(Xi).sum(axis=1), 1.0)


@pytest.mark.parametrize("classification", [True, False])
def test_an_ensemble_trains_and_tests_like_any_model(tmp_path: Path, classification: bool):
    X, y = cancer() if classification else diabetes()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    members = [FOREST, LOGISTIC] if classification else [FOREST_REGRESSOR, ("Ridge", {"alpha": 1.0})]
    description = round_trip(ensemble.description(classification, members, [0.5, 0.5]))
    path = tmp_path / "model.joblib"
    bundle = {
        "features": {name: name for name in X.columns},
        "numeric": dict.fromkeys(X.columns, True),
        "classification": classification,
        "csv_options": {},
    }
    done = worker.fit(X_train, y_train, {"model_json": description, "bundle": bundle, "path": str(path)})
    assert done["fit_time"] > 0
    loaded = predicting.Loaded.of(joblib.load(path))
    evaluation = predicting.evaluate(loaded, X_test, y_test)
    values = {m.metric: m.value for m in evaluation.metrics}
    if classification:
        assert done["classes"] == ["0", "1"] and loaded.labels == ["0", "1"]
        assert values[c.METRIC_ACCURACY] > 0.9 and values[c.METRIC_ROC_AUC] > 0.95
        assert len(predicting.predict(loaded, X_test.head(3))[0].probabilities) == 2
    else:
        assert values[c.METRIC_R2] > 0.3
