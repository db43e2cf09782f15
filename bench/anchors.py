"""One anchor of bench/quality.py on one split: fit on the train file, score on the holdout file, print JSON.

    bench/.venv-anchors/bin/python bench/anchors.py --train train.csv --holdout holdout.csv \
        --target Survived --task classification --anchor rf|hgb|flaml|ag|ag_best [--budget 60]

Runs in the anchors' own venv (FLAML and AutoGluon, bench/anchors-requirements.txt; `python
bench/quality.py --setup` makes it), never in the suite's; rf and hgb need only scikit-learn and pandas.
The protocol is /work/shared/notes/anchors.md: both files read with pandas defaults, every column kept
(ids and free text too), categorical columns found as "not numeric".

- rf: RandomForest{Classifier,Regressor}(n_estimators=100, random_state=0) after median imputation of the
  numeric columns and constant imputation + one-hot encoding (unknown categories ignored) of the others.
- hgb: HistGradientBoosting{Classifier,Regressor}() defaults with native categoricals: non-numeric columns
  as pandas categories (those of the train file; unseen values become missing). A column with more
  categories than HGB's 255 bins (titanic's Name, churn's Surname) cannot be native categorical: it goes
  in as its ordinal codes instead.
- flaml: flaml.AutoML().fit(X, y, task=..., time_budget=B, seed=0, n_jobs=2), metric left on auto.
- ag / ag_best: autogluon TabularPredictor(label, problem_type).fit(train, time_limit=B, num_cpus=2), the
  default preset and presets="best_quality".

The last line printed on stdout is one JSON object: anchor, metric, score (accuracy or R2), roc_auc (binary,
when probabilities come back), fit_seconds, predict_seconds, versions, error (a string when the anchor failed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import pandas as pd

ANCHORS = ("rf", "hgb", "flaml", "ag", "ag_best")
HGB_MAX_CATEGORIES = 255


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def fit_rf(X: pd.DataFrame, y: pd.Series, task: str):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    cats = categorical_columns(X)
    nums = [c for c in X.columns if c not in cats]
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), nums),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cats,
            ),
        ]
    )
    forest = RandomForestClassifier if task == "classification" else RandomForestRegressor
    model = Pipeline([("prep", prep), ("model", forest(n_estimators=100, random_state=0))])
    # The categorical columns as plain strings (missing ones stay missing for the imputer).
    return model.fit(_as_strings(X, cats), y), lambda frame: _as_strings(frame, cats)


def _as_strings(frame: pd.DataFrame, cats: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in cats:
        out[c] = out[c].astype(object).map(lambda v: v if pd.isna(v) else str(v))
    return out


def fit_hgb(X: pd.DataFrame, y: pd.Series, task: str):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    categories = {c: pd.Index(X[c].dropna().astype(str).unique()).sort_values() for c in categorical_columns(X)}

    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for c, known in categories.items():
            values = out[c].astype(str).where(out[c].notna())
            typed = pd.Categorical(values, categories=known)
            # Native categorical up to HGB's bins; beyond, the ordinal codes (missing: NaN) as a number.
            out[c] = typed if len(known) <= HGB_MAX_CATEGORIES else np.where(typed.codes < 0, np.nan, typed.codes)
        return out

    booster = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return booster(categorical_features="from_dtype").fit(encode(X), y), encode


def fit_flaml(X: pd.DataFrame, y: pd.Series, task: str, budget: float):
    from flaml import AutoML

    automl = AutoML()
    automl.fit(X, y, task=task, time_budget=budget, seed=0, n_jobs=2, verbose=0)
    return automl, lambda frame: frame


def fit_ag(train: pd.DataFrame, target: str, task: str, budget: float, best: bool, folder: str):
    from autogluon.tabular import TabularPredictor

    problem = "regression" if task == "regression" else "binary" if train[target].nunique() == 2 else "multiclass"
    predictor = TabularPredictor(label=target, problem_type=problem, path=folder, verbosity=0)
    extra = {"presets": "best_quality"} if best else {}
    predictor.fit(train, time_limit=budget, num_cpus=2, **extra)
    return predictor


def score(task: str, y_true: pd.Series, predicted, proba: pd.DataFrame | None) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    if task == "regression":
        return {"metric": "r2", "score": float(r2_score(y_true, np.asarray(predicted, dtype=float))), "roc_auc": None}
    out: dict[str, float | None] = {
        "metric": "accuracy",
        "score": float(accuracy_score(y_true, np.asarray(predicted))),
        "roc_auc": None,
    }
    labels = sorted(pd.unique(y_true))
    if proba is not None and len(labels) == 2:
        positive = labels[1]
        if positive in proba.columns:
            out["roc_auc"] = float(roc_auc_score(y_true == positive, proba[positive].to_numpy()))
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    train = pd.read_csv(args.train)
    holdout = pd.read_csv(args.holdout)
    X, y = train.drop(columns=[args.target]), train[args.target]
    X_test, y_test = holdout.drop(columns=[args.target]), holdout[args.target]
    started = time.perf_counter()
    proba: pd.DataFrame | None = None
    with tempfile.TemporaryDirectory(prefix="anchor-") as folder:
        os.chdir(folder)  # whatever a library writes beside it goes away with it
        if args.anchor in ("ag", "ag_best"):
            predictor = fit_ag(train, args.target, args.task, args.budget, args.anchor == "ag_best", folder + "/ag")
            fitted = time.perf_counter()
            predicted = predictor.predict(X_test).to_numpy()
            if args.task == "classification":
                proba = predictor.predict_proba(X_test)
        else:
            if args.anchor == "rf":
                model, prepare = fit_rf(X, y, args.task)
            elif args.anchor == "hgb":
                model, prepare = fit_hgb(X, y, args.task)
            else:
                model, prepare = fit_flaml(X, y, args.task, args.budget)
            fitted = time.perf_counter()
            predicted = model.predict(prepare(X_test))
            if args.task == "classification" and hasattr(model, "predict_proba"):
                proba = pd.DataFrame(model.predict_proba(prepare(X_test)), columns=list(model.classes_))
        ended = time.perf_counter()
    out: dict[str, object] = {"anchor": args.anchor, **score(args.task, y_test, predicted, proba)}
    if args.anchor == "flaml":
        out["best_estimator"] = model.best_estimator
    elif args.anchor in ("ag", "ag_best"):
        out["best_estimator"] = predictor.model_best
    out.update(fit_seconds=round(fitted - started, 2), predict_seconds=round(ended - fitted, 2))
    return out


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("scikit-learn", "pandas", "flaml", "autogluon.tabular", "lightgbm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--holdout", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", required=True, choices=("classification", "regression"))
    parser.add_argument("--anchor", required=True, choices=ANCHORS)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds, for flaml, ag and ag_best")
    args = parser.parse_args(argv)
    args.train, args.holdout = os.path.abspath(args.train), os.path.abspath(args.holdout)
    warnings.filterwarnings("ignore")
    try:
        out = run(args)
    except Exception as exc:  # noqa: BLE001 - the caller reports an anchor that failed, and goes on
        traceback.print_exc(file=sys.stderr)
        out = {"anchor": args.anchor, "error": f"{type(exc).__name__}: {exc}"[:500]}
    out["versions"] = versions()
    print(json.dumps(out), flush=True)
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
