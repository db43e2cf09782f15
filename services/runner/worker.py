"""What runs inside a worker process: one candidate's cross-validation at a time.

The runner's fork server preloads this module, so every worker starts with
aikit imported and patched, and only has to load its run's data. A worker
talks to its parent over one pipe:

    parent -> worker   (job_id, job_param)      evaluate this candidate (or, in a
                                                 "fit" worker, refit it and write its file)
                       None                      exit
    worker -> parent   ("ready", pid)            data loaded, waiting for jobs
                       ("ok", job_id, payload)   {"rows": aikit's score table, one dict per
                                                 fold (a fit or test worker: its job's
                                                 result dict), "predictions": the out-of-fold
                                                 predictions (float32) or None}
                       ("error", job_id, text)   the candidate raised

Time limits and the memory guard are the parent's job: it kills the process.
"""

from __future__ import annotations

import os
import pickle
import time
import traceback
import warnings
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from services.runner import aikit_compat, ensemble, signing

aikit_compat.load()

import joblib  # noqa: E402
from aikit.cross_validation import cross_validation  # noqa: E402  (after the compatibility layer)
from aikit.model_definition import sklearn_model_from_param  # noqa: E402
from aikit.scorer import SCORERS  # noqa: E402

ERROR_CHARS = 4000


class Scored(NamedTuple):
    """One candidate's cross-validation."""

    rows: list[dict[str, Any]]
    """aikit's score table, one dict per fold that ran."""
    predictions: npt.NDArray[np.float32] | None
    """Out-of-fold predictions (float32), rows in the order of the Evaluator's
    X (of the sample's rows, in order, for a candidate raced on a sample);
    (rows, classes) probabilities, columns in the order of np.unique(y), for
    classification; (rows,) for regression. None when aikit stopped the
    candidate before its last fold."""


class Evaluator:
    """Cross-validates candidates on one table, as aikit's MlJobRunner.do_job
    does, but with our folds (seeded by the experiment) and no files."""

    def __init__(self, X: Any, y: Any, classification: bool, folds: int, seed: int, scorer_names: list[str]) -> None:
        self.X = X
        self.y = y
        self.cv = ensemble.splitter(classification, folds, seed)
        self.scorers = {name: SCORERS[name] for name in scorer_names}
        self.method = "predict_proba" if classification else "predict"

    def evaluate(self, job_param: dict[str, Any]) -> Scored:
        """job_param: "model_json" (an aikit model description), optionally
        "stopping_round" and "stopping_threshold" (aikit's early stopping of
        poor candidates) and "rows" (sorted row positions: cross-validate on
        those rows only, with the same splitter)."""
        model = build(job_param["model_json"])
        X, y = self.X, self.y
        sample = job_param.get("rows")
        if sample is not None:
            positions = np.asarray(sample, dtype=np.intp)
            X = X.iloc[positions] if hasattr(X, "iloc") else X[positions]
            y = y.iloc[positions] if hasattr(y, "iloc") else y[positions]
        result = cross_validation(
            model,
            X=X,
            y=y,
            cv=self.cv,
            scoring=self.scorers,
            verbose=0,
            method=self.method,
            # One more predict per fold, on its test rows: 2-3% of a 5-fold
            # RandomForest cross-validation on breast cancer.
            return_predict=True,
            stopping_round=job_param.get("stopping_round"),
            stopping_threshold=job_param.get("stopping_threshold"),
        )
        predictions = None
        result, predicted = result
        if predicted is not None and len(result) == self.cv.get_n_splits():
            # A DataFrame (classes in np.unique(y) order) for probabilities.
            predictions = np.asarray(predicted, dtype=np.float32)
            if predictions.ndim == 2 and self.method == "predict":
                predictions = predictions.ravel()
        return Scored(result.to_dict(orient="records"), predictions)


def build(model_json: Any) -> Any:
    """The scikit-learn pipeline of an aikit model description, on one core:
    LightGBM's n_jobs=None means "every physical core" and ignores the
    OpenMP limit; forests take n_jobs too. A greedy ensemble's description
    builds its estimator, which builds each member here when it is fit."""
    if ensemble.is_ensemble(model_json):
        # Not through sklearn_model_from_param: it would turn the members'
        # descriptions into unfitted estimators, out of reach of the n_jobs
        # pinning below, and it finds names in aikit's global registry.
        return ensemble.from_description(model_json)
    model = sklearn_model_from_param(model_json)
    threads = [key for key in model.get_params(deep=True) if key.endswith("n_jobs")]
    model.set_params(**dict.fromkeys(threads, 1))
    return model


def fit(X: Any, y: Any, job_param: dict[str, Any]) -> dict[str, Any]:
    """Refit a candidate on all the rows given and write the model file
    (joblib: the fitted pipeline and what predicting needs to know)."""
    model = build(job_param["model_json"])
    started = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - started
    bundle = dict(job_param["bundle"], model=model)
    if job_param["bundle"].get("classification"):
        bundle["classes"] = list(getattr(model, "classes_", sorted(set(y))))
    joblib.dump(bundle, job_param["path"], compress=3)
    return {"fit_time": seconds, "classes": [str(label) for label in bundle.get("classes", [])]}


def fit_from_csv(job_param: dict[str, Any]) -> dict[str, Any]:
    """Read every training row of the file here, in the worker, then refit:
    the runner itself never holds a large training set."""
    from automl.v1 import dataset_pb2, experiment_pb2
    from services.runner import predicting, problem

    dataset = dataset_pb2.Dataset.FromString(job_param["dataset"])
    experiment = experiment_pb2.Experiment.FromString(job_param["experiment"])
    part = "all" if job_param.get("include_holdout") else "train"
    data = problem.load(Path(job_param["csv"]), dataset, experiment, job_param["sample_cells"], part)
    out = fit(data.X, data.y, dict(job_param, bundle=predicting.bundle_fields(data, dataset.csv_options)))
    out.update(training_rows=len(data.y), holdout_digest=data.holdout_digest, columns=list(data.columns.values()))
    return out


def test_from_csv(job_param: dict[str, Any]) -> dict[str, Any]:
    """Score a model file on the holdout rows, read here in the worker."""
    from automl.v1 import dataset_pb2, experiment_pb2
    from services.runner import predicting, problem

    dataset = dataset_pb2.Dataset.FromString(job_param["dataset"])
    experiment = experiment_pb2.Experiment.FromString(job_param["experiment"])
    data = problem.load(Path(job_param["csv"]), dataset, experiment, job_param["sample_cells"], "holdout")
    with signing.open_sealed(Path(job_param["model_path"]), job_param["key"]) as stream:
        loaded = predicting.Loaded.of(joblib.load(stream))
    assert data.holdout_X is not None and data.holdout_y is not None  # the "holdout" part holds them
    evaluation = predicting.evaluate(loaded, data.holdout_X, data.holdout_y)
    return {"evaluation": evaluation.SerializeToString(), "holdout_digest": data.holdout_digest}


_served: Any = None
"""The model a "serve" worker holds (a predicting.Loaded)."""


def serve(job_param: dict[str, Any]) -> dict[str, Any]:
    """A worker that holds one model and answers Predict calls: "load" checks
    the file's seal and unpickles it here, never in the runner's process;
    "predict" answers rows. A refusal a user can act on comes back as
    {"refused": message}."""
    from automl.common.errors import AutoMLError
    from services.runner import predicting

    global _served
    try:
        if job_param["op"] == "load":
            with signing.open_sealed(Path(job_param["path"]), job_param["key"]) as stream:
                _served = predicting.Loaded.of(joblib.load(stream))
            return {"bundle": {k: v for k, v in vars(_served).items() if k != "model"}}
        predicted, probabilities = predicting.raw_predictions(_served, job_param["X"])
        return {"predicted": predicted, "probabilities": probabilities}
    except AutoMLError as exc:
        return {"refused": exc.message}


# Workers that do one kind of job on rows they read themselves, by setup["mode"].
JOBS = {"fit": fit_from_csv, "test": test_from_csv, "serve": serve}


def describe(exc: BaseException) -> str:
    """The error and where it happened, short enough to store and show."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return text[:ERROR_CHARS]


def main(conn: Connection, data_path: str, setup: dict[str, Any]) -> None:
    """Entry point of a worker process."""
    from threadpoolctl import threadpool_limits

    # One core per worker: the pool is the parallelism. Without this, each
    # LightGBM or BLAS call would start a thread per core and workers would fight.
    threadpool_limits(1)
    # Candidates chatter: LightGBM's C++ warnings and joblib's progress lines go
    # to stdout, convergence and deprecation warnings to stderr, thousands per
    # run. Errors still reach stderr, and each failure is stored with its result.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    warnings.simplefilter("ignore")
    job = JOBS.get(setup.get("mode", ""))
    evaluator = None
    if job is None:  # a search worker: its run's rows, once
        # Below the services' CPU priority: when the candidates take every core,
        # answers and event streams still come first (AUTOML_RUNNER_WORKER_NICE).
        os.nice(int(setup.get("nice", 0)))
        with open(data_path, "rb") as f:
            X, y = pickle.load(f)
        evaluator = Evaluator(X, y, setup["classification"], setup["folds"], setup["seed"], setup["scorers"])
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job_id, job_param = message
        try:
            if evaluator is None:
                assert job is not None  # a worker without a job kind has an evaluator
                payload: dict[str, Any] = {"rows": job(job_param), "predictions": None}
            else:
                scored = evaluator.evaluate(job_param)
                payload = {"rows": scored.rows, "predictions": scored.predictions}
        except Exception as exc:  # noqa: BLE001 - a candidate failing for any reason is a result
            conn.send(("error", job_id, describe(exc)))
        else:
            conn.send(("ok", job_id, payload))
