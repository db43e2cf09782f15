"""A greedy ensemble of searched candidates: forward selection with
replacement over their out-of-fold predictions (Caruana et al., 2004), as
auto-sklearn's and AutoGluon's ensemble selection do.

Plain numpy and scikit-learn. The pieces, in the order a run uses them:

- `splitter` is THE cross-validation splitter of a run: the worker's
  Evaluator and `fold_assignment` both call it, so the folds the candidates
  were scored on and the folds the ensemble is scored on cannot drift apart;
- `metric_function` scores predictions (rows in the order of y, columns in
  the order of the sorted classes) as aikit's scorer of that name scores a
  fitted model, greater is better;
- `select` picks the members and their weights from the candidates'
  out-of-fold predictions;
- `fold_rows` scores the blended out-of-fold predictions fold by fold, in the
  shape of aikit's score table, so that scoring.summarize treats the ensemble
  like any candidate;
- `GreedyEnsembleClassifier` / `GreedyEnsembleRegressor` are the model the
  ensemble's description builds (worker.build): each member is built from its
  aikit description and refit on the same rows, predictions are the weighted
  average of theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import KFold, StratifiedKFold

Metric = Callable[[npt.NDArray[Any], npt.NDArray[Any]], float]

# ------------------------------------------------------------------- folds


def splitter(classification: bool, folds: int, seed: int) -> KFold | StratifiedKFold:
    """The cross-validation splitter of a run: stratified for classification,
    shuffled, seeded by the experiment. The only place it is constructed."""
    kind = StratifiedKFold if classification else KFold
    return kind(n_splits=folds, shuffle=True, random_state=seed)


def fold_assignment(
    y: pd.Series[Any] | npt.NDArray[Any], classification: bool, folds: int, seed: int
) -> npt.NDArray[np.intp]:
    """Each row's test fold (0 .. folds - 1, int array aligned to y) under the
    splitter the worker's Evaluator cross-validates candidates with, for the
    same y (all of the search rows, in the worker's order)."""
    labels = np.asarray(y)
    out = np.full(len(labels), -1, dtype=np.intp)
    # The splitters only look at the number of rows of X (and at y).
    for fold, (_, test) in enumerate(splitter(classification, folds, seed).split(np.zeros((len(labels), 1)), labels)):
        out[test] = fold
    return out


# ----------------------------------------------------------------- metrics

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "avg_roc_auc", "log_loss_patched")
REGRESSION_METRICS = ("r2", "neg_root_mean_squared_error", "neg_mean_absolute_error")


def metric_function(scorer_name: str, classes: npt.NDArray[Any] | None) -> Metric:
    """score(y_true, predictions) -> float, the value aikit's scorer
    `scorer_name` (aikit.scorer.SCORERS) gives a fitted model whose
    predict_proba (classification) or predict (regression) returns
    `predictions`: greater is better, losses negated as aikit does.

    Classification: predictions is (rows, len(classes)), columns in the order
    of `classes` (the sorted labels, np.unique of the training y; None: those
    of y_true); the predicted label is the column of highest probability (the
    first on ties), as predict gives it for the models aikit searches.
    Regression: predictions is (rows,). Predictions are read as float64, as a
    model's predict_proba gives them: log loss clips at float64's epsilon.

    Numpy implementations equal to aikit's / scikit-learn's to 1e-9 and fast
    enough for `select` (thousands of calls). The classification functions
    remember the codes of the last y_true they saw, by identity: do not
    modify y_true in place between calls. Raises ValueError where scikit-learn
    does (ROC AUC with one class present, a label outside `classes`).
    """
    if scorer_name in REGRESSION_METRICS:
        return _REGRESSION[scorer_name]
    if scorer_name not in CLASSIFICATION_METRICS:
        raise ValueError(f"no metric function for aikit scorer {scorer_name!r}")
    return _CLASSIFICATION[scorer_name](_Labels(classes))


class _Labels:
    """Class labels -> column positions, remembering the last y_true."""

    def __init__(self, classes: npt.NDArray[Any] | None) -> None:
        self.classes = None if classes is None else np.asarray(classes)
        self._seen: Any = None
        self._codes = np.empty(0, dtype=np.intp)
        self._classes = np.empty(0)

    def codes(self, y_true: Any) -> tuple[npt.NDArray[np.intp], int]:
        """(column of each row's true label, number of classes)."""
        if y_true is not self._seen:
            labels = np.asarray(y_true)
            classes = np.unique(labels) if self.classes is None else self.classes
            codes = np.searchsorted(classes, labels)
            inside = codes < len(classes)
            if not inside.all() or not (classes[codes] == labels).all():
                raise ValueError("y_true holds labels that are not among the classes")
            self._seen, self._codes, self._classes = y_true, codes, classes
        return self._codes, len(self._classes)


def _probabilities(predictions: npt.NDArray[Any], k: int) -> npt.NDArray[np.float64]:
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"predictions must be (rows, {k} classes), got {p.shape}")
    return p


def _accuracy(labels: _Labels) -> Metric:
    def accuracy(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
        codes, k = labels.codes(y_true)
        return float(np.mean(_probabilities(predictions, k).argmax(axis=1) == codes))

    return accuracy


def _balanced_accuracy(labels: _Labels) -> Metric:
    def balanced_accuracy(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
        codes, k = labels.codes(y_true)
        predicted = _probabilities(predictions, k).argmax(axis=1)
        support = np.bincount(codes, minlength=k)
        hits = np.bincount(codes[predicted == codes], minlength=k)
        present = support > 0  # scikit-learn drops the classes absent from y_true
        return float(np.mean(hits[present] / support[present]))

    return balanced_accuracy


def _f1_macro(labels: _Labels) -> Metric:
    def f1_macro(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
        codes, k = labels.codes(y_true)
        predicted = _probabilities(predictions, k).argmax(axis=1)
        support = np.bincount(codes, minlength=k)
        chosen = np.bincount(predicted, minlength=k)
        hits = np.bincount(codes[predicted == codes], minlength=k)
        used = (support + chosen) > 0  # scikit-learn's labels: those of y_true and y_pred
        return float(np.mean(2.0 * hits[used] / (support[used] + chosen[used])))

    return f1_macro


def _avg_roc_auc(labels: _Labels) -> Metric:
    def avg_roc_auc(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
        # aikit's avg_roc_auc_score: one-vs-rest ROC AUC of each class present
        # in y_true, macro average (binary included: both columns).
        codes, k = labels.codes(y_true)
        p = _probabilities(predictions, k)
        support = np.bincount(codes, minlength=k)
        present = np.flatnonzero(support > 0)
        if len(present) < 2:
            raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
        aucs = []
        for column in present:
            # Mann-Whitney: P(positive scored above a negative) + half P(tie),
            # which is the trapezoidal AUC scikit-learn computes. Sorting both
            # sides makes the searches cache-friendly (8 ms at 40,000 x 10).
            scores = p[:, column]
            positive = codes == column
            negatives = np.sort(scores[~positive])
            positives = np.sort(scores[positive])
            below = int(np.searchsorted(negatives, positives, "left").sum())
            not_above = int(np.searchsorted(negatives, positives, "right").sum())
            aucs.append((below + 0.5 * (not_above - below)) / (float(len(positives)) * float(len(negatives))))
        return float(np.mean(aucs))

    return avg_roc_auc


def _log_loss(labels: _Labels) -> Metric:
    def log_loss_patched(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
        # aikit's log_loss_scorer_patched: -log_loss(labels=classes); scikit-learn
        # 1.5 clips at the dtype's epsilon and does not renormalize the rows.
        codes, k = labels.codes(y_true)
        if k < 2:
            raise ValueError("log loss needs at least two classes")
        p = _probabilities(predictions, k)
        eps = np.finfo(np.float64).eps
        picked = np.clip(p[np.arange(len(codes)), codes], eps, 1 - eps)
        return float(np.mean(np.log(picked)))

    return log_loss_patched


def _regression_values(
    y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    predicted = np.asarray(predictions, dtype=np.float64).ravel()
    if truth.shape != predicted.shape:
        raise ValueError(f"{len(truth)} targets but {len(predicted)} predictions")
    return truth, predicted


def _r2(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    truth, predicted = _regression_values(y_true, predictions)
    residual = float(np.sum((truth - predicted) ** 2))
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0.0:  # scikit-learn's force_finite
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _neg_rmse(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    truth, predicted = _regression_values(y_true, predictions)
    return -float(np.sqrt(np.mean((truth - predicted) ** 2)))


def _neg_mae(y_true: npt.NDArray[Any], predictions: npt.NDArray[Any]) -> float:
    truth, predicted = _regression_values(y_true, predictions)
    return -float(np.mean(np.abs(truth - predicted)))


_CLASSIFICATION: dict[str, Callable[[_Labels], Metric]] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "f1_macro": _f1_macro,
    "avg_roc_auc": _avg_roc_auc,
    "log_loss_patched": _log_loss,
}
_REGRESSION: dict[str, Metric] = {
    "r2": _r2,
    "neg_root_mean_squared_error": _neg_rmse,
    "neg_mean_absolute_error": _neg_mae,
}


# --------------------------------------------------------------- selection

# Caruana, Niculescu-Mizil, Crew & Ksikes, "Ensemble selection from libraries
# of models", ICML 2004: start from an empty ensemble and repeatedly add (with
# replacement) the model whose addition most improves the metric of the
# averaged predictions on a hillclimb set; a model's weight is how often it was
# added. Taken from auto-sklearn's EnsembleSelection ("fast" mode): the
# running sum of the chosen predictions, so that each trial costs one addition
# and one metric call, and a fixed number of rounds (ensemble_size). From
# AutoGluon's EnsembleSelection: the out-of-fold predictions as the hillclimb
# set, and keeping the best-scoring prefix of the trajectory rather than its
# last step. Not taken: random tie-breaking (ties go to the lowest index, so a
# run is reproducible), sorted initialization and bagging (Caruana's remedies
# for large libraries; a run's library is small).
PATIENCE = 5


def select(
    predictions: Sequence[npt.NDArray[Any]],
    y: npt.NDArray[Any],
    score: Metric,
    size: int = 25,
    *,
    patience: int | None = PATIENCE,
) -> list[float]:
    """Greedy forward selection with replacement: a weight per input
    prediction array (same order), summing to 1, 0.0 for the inputs not chosen.

    predictions: the candidates' out-of-fold predictions, all of one shape
    ((rows, classes) probabilities or (rows,) values), rows aligned to y.
    score(y, blend) -> float, greater is better (metric_function); it gets a
    buffer reused between calls, which it must not keep.

    Each round adds the input whose addition gives the best-scoring average
    (ties: the lowest index; NaN scores lose), for at most `size` rounds. The
    weights are counts / picks of the best-scoring round (the first of equal
    ones), so the ensemble never scores below the best single input. The
    search stops once `patience` rounds in a row found nothing better than
    that best (None: all `size` rounds): with replacement, a round that does
    not improve can be followed by one that does (a model added again shifts
    the weights), so one flat round is no proof; several in a row mean the
    blend oscillates around a plateau, and since the best prefix is what is
    returned, further rounds could only matter by climbing past it again.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    if not predictions:
        raise ValueError("no predictions to select from")
    arrays = [np.asarray(p) for p in predictions]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"predictions differ in shape: {sorted({a.shape for a in arrays})}")
    total = np.zeros(shape, dtype=np.float64)
    trial = np.empty(shape, dtype=np.float64)
    counts = np.zeros(len(arrays), dtype=np.int64)
    best_counts = counts
    best = -np.inf
    stale = 0
    for picks in range(1, size + 1):
        scores = np.full(len(arrays), -np.inf)
        for i, array in enumerate(arrays):
            np.add(total, array, out=trial)
            trial *= 1.0 / picks
            value = score(y, trial)
            if not np.isnan(value):
                scores[i] = value
        chosen = int(np.argmax(scores))  # the first of the best
        total += arrays[chosen]
        counts[chosen] += 1
        if scores[chosen] > best:
            best, best_counts, stale = float(scores[chosen]), counts.copy(), 0
        else:
            stale += 1
            if patience is not None and stale >= patience:
                break
    if not best_counts.any():  # every score NaN: the first input alone
        best_counts = np.eye(len(arrays), dtype=np.int64)[0]
    return [float(c) / float(best_counts.sum()) for c in best_counts]


def weighted_average(predictions: Sequence[npt.NDArray[Any]], weights: Sequence[float]) -> npt.NDArray[np.float64]:
    """The blend (float64) of prediction arrays, weights as `select` gives them."""
    total = np.zeros(np.shape(predictions[0]), dtype=np.float64)
    for p, w in zip(predictions, weights, strict=True):
        if w:
            total += w * np.asarray(p, dtype=np.float64)
    return total / float(sum(weights))


def fold_rows(
    blend: npt.NDArray[Any],
    y: npt.NDArray[Any],
    fold_of_row: npt.NDArray[Any],
    scorer_names: list[str],
    classes: npt.NDArray[Any] | None,
    *,
    fit_time: float = 0.0,
) -> list[dict[str, Any]]:
    """The ensemble's score table from its blended out-of-fold predictions:
    one dict per fold (ascending), as aikit's cross_validation rows are
    ("test_<scorer>" per scorer, "fit_time" (given), "score_time" 0.0,
    "n_test_samples", "fold_nb"), no train scores. A metric undefined on a
    fold is NaN, which scoring.summarize leaves out. `classes` as for
    metric_function (None for regression)."""
    labels = np.asarray(y)
    folds = np.asarray(fold_of_row)
    metrics = {name: metric_function(name, classes) for name in scorer_names}
    rows = []
    for fold in np.unique(folds):
        mask = folds == fold
        row: dict[str, Any] = {}
        for name, metric in metrics.items():
            try:
                row[f"test_{name}"] = metric(labels[mask], blend[mask])
            except ValueError:
                row[f"test_{name}"] = float("nan")
        row.update(fit_time=fit_time, score_time=0.0, n_test_samples=int(mask.sum()), fold_nb=int(fold))
        rows.append(row)
    return rows


# -------------------------------------------------------------- estimators

ENSEMBLES = ("GreedyEnsembleClassifier", "GreedyEnsembleRegressor")


def is_ensemble(model: Any) -> bool:
    """Whether an aikit-style model description is one of ours:
    ("GreedyEnsembleClassifier" | "GreedyEnsembleRegressor", {"models": [...], "weights": [...]})."""
    return isinstance(model, tuple) and len(model) == 2 and model[0] in ENSEMBLES and isinstance(model[1], dict)


def from_description(model: Any) -> GreedyEnsembleClassifier | GreedyEnsembleRegressor:
    """The (unfitted) estimator of an ensemble description (is_ensemble)."""
    kind = GreedyEnsembleClassifier if model[0] == "GreedyEnsembleClassifier" else GreedyEnsembleRegressor
    return kind(**model[1])


def description(classification: bool, models: Sequence[Any], weights: Sequence[float]) -> tuple[str, dict[str, Any]]:
    """The model description of an ensemble, members with a weight only: what
    worker.build builds and what aikit's json_helper round-trips."""
    kept = [(m, float(w)) for m, w in zip(models, weights, strict=True) if w > 0]
    name = ENSEMBLES[0] if classification else ENSEMBLES[1]
    return name, {"models": [m for m, _ in kept], "weights": [w for _, w in kept]}


class _GreedyEnsemble(BaseEstimator):  # type: ignore[misc]  # scikit-learn has no type information
    """Members are aikit model descriptions; fit builds each as worker.build
    does (one core) and fits it on all of X, y. Members of weight 0 are not fit."""

    def __init__(self, models: list[Any] | None = None, weights: list[float] | None = None) -> None:
        self.models = models
        self.weights = weights

    def _fit_members(self, X: Any, y: Any) -> None:
        from services.runner.worker import build  # imports aikit (through aikit_compat)

        models = list(self.models or [])
        weights = [float(w) for w in (self.weights or [])]
        if len(models) != len(weights):
            raise ValueError(f"{len(models)} models but {len(weights)} weights")
        if any(w < 0 or not np.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be finite, non-negative and not all 0")
        kept = [(m, w) for m, w in zip(models, weights, strict=True) if w > 0]
        self.estimators_ = [build(m).fit(X, y) for m, _ in kept]
        total = sum(w for _, w in kept)
        self.weights_ = np.asarray([w / total for _, w in kept], dtype=np.float64)


class GreedyEnsembleClassifier(ClassifierMixin, _GreedyEnsemble):  # type: ignore[misc]  # scikit-learn: untyped
    """Weighted average of the members' class probabilities."""

    def fit(self, X: Any, y: Any) -> GreedyEnsembleClassifier:
        self.classes_ = np.unique(np.asarray(y))
        self._fit_members(X, y)
        return self

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        """(rows, len(classes_)), columns in the order of classes_; a class a
        member does not know gets 0 from it."""
        out = np.zeros((_rows(X), len(self.classes_)), dtype=np.float64)
        for estimator, weight in zip(self.estimators_, self.weights_, strict=True):
            columns = np.searchsorted(self.classes_, np.asarray(estimator.classes_))
            out[:, columns] += weight * np.asarray(estimator.predict_proba(X), dtype=np.float64)
        return out

    def predict(self, X: Any) -> npt.NDArray[Any]:
        predicted: npt.NDArray[Any] = self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return predicted


class GreedyEnsembleRegressor(RegressorMixin, _GreedyEnsemble):  # type: ignore[misc]  # scikit-learn: untyped
    """Weighted average of the members' predictions."""

    def fit(self, X: Any, y: Any) -> GreedyEnsembleRegressor:
        self._fit_members(X, y)
        return self

    def predict(self, X: Any) -> npt.NDArray[np.float64]:
        out = np.zeros(_rows(X), dtype=np.float64)
        for estimator, weight in zip(self.estimators_, self.weights_, strict=True):
            out += weight * np.asarray(estimator.predict(X), dtype=np.float64).ravel()
        return out


def _rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)
