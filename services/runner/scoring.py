"""Our metrics in aikit's terms, and aikit's per-fold score table in ours.

aikit (like scikit-learn) scores so that greater is better: losses come
negated ("neg_..."), and aikit's log_loss_patched is negative too. The fold
table keeps aikit's columns and signs; summaries are in the metric's natural
units (automl.v1.Metric).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automl.v1 import common_pb2 as c


@dataclass(frozen=True)
class Scorer:
    metric: c.Metric
    name: str
    """aikit's scorer name (a key of aikit.scorer.SCORERS)."""
    sign: float
    """natural value = sign * aikit's value."""


CLASSIFICATION = (
    Scorer(c.METRIC_ACCURACY, "accuracy", 1.0),
    Scorer(c.METRIC_BALANCED_ACCURACY, "balanced_accuracy", 1.0),
    Scorer(c.METRIC_F1_MACRO, "f1_macro", 1.0),
    Scorer(c.METRIC_ROC_AUC, "avg_roc_auc", 1.0),
    Scorer(c.METRIC_LOG_LOSS, "log_loss_patched", -1.0),
)
REGRESSION = (
    Scorer(c.METRIC_R2, "r2", 1.0),
    Scorer(c.METRIC_RMSE, "neg_root_mean_squared_error", -1.0),
    Scorer(c.METRIC_MAE, "neg_mean_absolute_error", -1.0),
)
FOLD_COLUMNS = ("fit_time", "score_time", "n_test_samples")


def scorers(task: c.Task, primary: c.Metric) -> list[Scorer]:
    """The task's scorers, the primary metric's first (aikit's main scorer:
    its early stopping of poor candidates watches the first one)."""
    every = REGRESSION if task == c.TASK_REGRESSION else CLASSIFICATION
    first = [s for s in every if s.metric == primary]
    if not first:
        raise ValueError(f"{c.Metric.Name(primary)} does not suit {c.Task.Name(task)}")
    return first + [s for s in every if s.metric != primary]


@dataclass
class Summary:
    """One candidate's cross-validation, in the shape of automl.v1.ModelResult."""

    folds: list[dict[str, Any]]
    """[{"fold_nb": n, "values": {column: value}}], aikit's columns."""
    metrics: list[dict[str, Any]]
    """[{"metric", "mean", "std", "train_mean"}] in natural units."""
    primary_score: float | None
    folds_run: int
    fit_time: float
    score_time: float


def summarize(rows: Sequence[Mapping[str, Any]], used: list[Scorer]) -> Summary:
    """Summarize aikit's score table (one mapping per fold that ran)."""
    folds: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        values = {str(k): float(v) for k, v in row.items() if k != "fold_nb" and _number(v) and math.isfinite(float(v))}
        folds.append({"fold_nb": int(row.get("fold_nb", i)), "values": values})
    metrics: list[dict[str, Any]] = []
    primary = None
    for scorer in used:
        test = [f["values"].get(f"test_{scorer.name}") for f in folds]
        if not test or any(v is None for v in test):
            continue  # undefined on a fold (e.g. ROC AUC with a class missing): not reported
        natural = [scorer.sign * v for v in test]
        mean = sum(natural) / len(natural)
        summary: dict[str, Any] = {
            "metric": scorer.metric,
            "mean": mean,
            "std": math.sqrt(sum((v - mean) ** 2 for v in natural) / len(natural)),
            "train_mean": None,
        }
        train = [f["values"].get(f"train_{scorer.name}") for f in folds]
        if train and all(v is not None for v in train):
            summary["train_mean"] = sum(scorer.sign * v for v in train) / len(train)
        metrics.append(summary)
        if scorer is used[0]:
            primary = mean
    return Summary(
        folds=folds,
        metrics=metrics,
        primary_score=primary,
        folds_run=len(folds),
        fit_time=sum(f["values"].get("fit_time", 0.0) for f in folds),
        score_time=sum(f["values"].get("score_time", 0.0) for f in folds),
    )


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
