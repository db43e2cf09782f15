"""What a search works on, and the rules every way of reading it applies.

The runner reads a dataset whole (services.runner.problem) or, when it is too
large, in two streamed passes (services.runner.largedata). Both make the same
Problem, check the experiment's search settings and the target's classes the
same way, and keep the same feature columns: those shared parts live here, so
that either reader can use them without importing the other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2

DEFAULT_FOLDS = 5
DEFAULT_HOLDOUT = 0.2
# LightGBM refuses feature names with JSON's special characters (and FLAML
# dies on them: ../shared/notes/anchors.md); pandas names an unnamed column
# "Unnamed: 0", so this is common.
_LIGHTGBM_REFUSED = re.compile(r'[",:\[\]{}\s]+')


@dataclass
class Problem:
    """A searchable table: features and target of the search rows, and the
    record of how they were made."""

    X: pd.DataFrame
    """Search rows (holdout left out), with sanitized column names."""
    y: pd.Series[Any]
    task: c.Task
    metric: c.Metric
    folds: int
    seed: int
    holdout_rows: list[int]
    """0-based data rows of the file kept out of the search."""
    search_rows: list[int]
    columns: dict[str, str]
    """Sanitized feature name -> column name in the file, in feature order."""
    dropped: dict[str, str] = field(default_factory=dict)
    """Column of the file -> why it is not a feature."""
    rows_without_target: int = 0
    holdout_X: pd.DataFrame | None = None
    """Holdout rows, features as in X."""
    holdout_y: pd.Series[Any] | None = None
    training_rows: int = 0
    """Rows a chosen model is refitted on: every row with a target but the holdout."""
    holdout_count: int = 0
    holdout_digest: str = ""
    """sha256 of the holdout's row numbers (row_digest): how later steps check the split."""
    sampled: bool = False
    """X is a stratified sample of the training rows (a large dataset)."""
    notes: list[str] = field(default_factory=list)
    """What was adapted to the data (fewer folds, rare classes kept out of the holdout), one line each."""

    @property
    def random_state(self) -> int:
        return self.seed % 2**32

    def split_record(self, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment) -> dict[str, Any]:
        """What later steps (train, test) need to use the same rows."""
        return {
            "dataset": dataset.name,
            "dataset_sha256": dataset.sha256,
            "experiment": experiment.name,
            "target_column": experiment.target_column,
            "seed": self.seed,
            "holdout_fraction": holdout_fraction(experiment),
            "holdout_count": self.holdout_count,
            "holdout_sha256": self.holdout_digest,
            # Small tables list the rows; a large one's are found again from the seed (largedata.py).
            **({"holdout_rows": self.holdout_rows} if self.holdout_rows or not self.holdout_count else {}),
            "search_row_count": len(self.search_rows),
            "training_row_count": self.training_rows,
            "sampled": self.sampled,
            "feature_columns": self.columns,
            "dropped_columns": self.dropped,
            "rows_without_target": self.rows_without_target,
        }


def holdout_fraction(experiment: experiment_pb2.Experiment) -> float:
    return experiment.holdout_fraction or DEFAULT_HOLDOUT


def search_settings(experiment: experiment_pb2.Experiment) -> tuple[c.Task, int, float]:
    """The experiment's task, cross-validation folds and holdout fraction, or
    INVALID_ARGUMENT naming the field that cannot work."""
    task = experiment.resolved_task
    if task not in (c.TASK_CLASSIFICATION, c.TASK_REGRESSION):
        raise InvalidArgument.field("experiment.resolved_task", "must be TASK_CLASSIFICATION or TASK_REGRESSION")
    folds = experiment.cv_folds or DEFAULT_FOLDS
    if not 2 <= folds <= 20:
        raise InvalidArgument.field("experiment.cv_folds", f"{folds}: use 2 to 20")
    fraction = holdout_fraction(experiment)
    if not 0 < fraction <= 0.5:
        raise InvalidArgument.field("experiment.holdout_fraction", f"{fraction}: use 0 to 0.5 (0 for 0.2)")
    return task, folds, fraction


def no_target(name: str) -> InvalidArgument:
    return InvalidArgument.field("experiment.target_column", f"{name!r} has no value on any row: nothing to learn")


def text_in_regression_target(name: str, example: str) -> InvalidArgument:
    return InvalidArgument.field(
        "experiment.task",
        f"regression needs a numeric target; {name!r} holds text such as {example!r}: "
        "use TASK_CLASSIFICATION or another target",
    )


def check_not_constant(X: pd.DataFrame) -> None:
    """Refuse search rows on which no feature varies."""
    if len(X) and all(X[name].nunique(dropna=True) <= 1 for name in X.columns):
        raise InvalidArgument.field(
            "dataset", "every feature column is constant on the search rows: there is nothing to learn from"
        )


def held_out(count: int, fraction: float, min_search: int) -> int:
    """Rows of a class of `count` rows that go to the holdout: its share (at
    least one), as long as `min_search` rows stay for the cross-validation;
    a class too small for both is kept whole in training."""
    return max(0, min(max(int(count * fraction + 0.5), 1), count - min_search))


def check_classes(
    counts: pd.Series[Any], name: str, folds: int, holdout: float, stratified: bool = False
) -> tuple[int, list[str]]:
    """Refuse a target with one class; adapt to small classes rather than
    refuse them. Returns the folds to use and a note per adaptation.

    With a stratified holdout (`stratified`), a class keeps `folds` rows for
    the search before it gives any to the holdout (held_out); a class too
    small for both is kept whole in training. When the smallest class has
    fewer search rows than folds, the cross-validation uses fewer folds (at
    least 2): every fold's training part then sees most classes."""
    if len(counts) < 2:
        raise InvalidArgument.field(
            "experiment.target_column", f"{name!r} has one class only ({counts.index[0]!r}): nothing to learn"
        )
    notes: list[str] = []
    if stratified:
        kept: list[Any] = [label for label, n in counts.items() if held_out(int(n), holdout, folds) == 0]
        if kept:
            notes.append(
                # By label, not counts[kept]: a list of booleans (a True/False target) is read as a mask.
                f"classes {_listed(counts[counts.index.isin(kept)])} are too small to give rows to the holdout: "
                "kept whole in training (the holdout test does not cover them)"
            )
        search = counts.map(lambda n: int(n) - held_out(int(n), holdout, folds))
    else:  # a random holdout of a large table: expect its share out of every class
        search = counts.map(lambda n: int(n * (1 - holdout)))
    smallest = int(search.min())
    if smallest < folds:
        adapted = max(2, smallest)
        rare = search[search < folds]
        notes.append(
            f"{adapted}-fold cross-validation instead of {folds}: classes {_listed(rare)} have fewer search rows "
            f"than {folds} folds" + (" (a class of one row is in one fold's test only)" if smallest < 2 else "")
        )
        folds = adapted
    return folds, notes


def _listed(counts: pd.Series[Any], most: int = 5) -> str:
    """The first classes by name and size; a note stays short whatever the number of classes."""
    listed = ", ".join(f"{str(label)[:40]!r} ({n} row{'s' if n != 1 else ''})" for label, n in counts[:most].items())
    return listed + (f" and {len(counts) - most} more" if len(counts) > most else "")


def row_digest(rows: npt.NDArray[Any]) -> str:
    """sha256 of row numbers (ascending, as little-endian int64). largedata
    computes the same digest block by block."""
    return hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes()).hexdigest()


def features(
    frame: pd.DataFrame, experiment: experiment_pb2.Experiment, dataset: dataset_pb2.Dataset
) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """The feature columns of `frame` (its index kept), renamed for LightGBM;
    also sanitized name -> name in the file, and dropped column -> why."""
    target = experiment.target_column
    identifiers = {p.name for p in dataset.columns if p.inferred_type == c.COLUMN_TYPE_IDENTIFIER}
    excluded = set(experiment.excluded_columns)
    dropped: dict[str, str] = {}
    kept = []
    for name in frame.columns:
        if name == target:
            continue
        if name in excluded:
            dropped[name] = "excluded by the experiment"
        elif name in identifiers:
            dropped[name] = "an identifier (distinct on every row)"
        elif frame[name].isna().all():
            dropped[name] = "no value on any row"
        else:
            kept.append(name)
    if not kept:
        raise InvalidArgument.field(
            "experiment.excluded_columns", "no feature column is left once the target, excluded and id columns are out"
        )
    columns = sanitized_names(kept)
    X = frame[kept].copy()
    X.columns = list(columns)
    return X, columns, dropped


def sanitized_names(names: list[str]) -> dict[str, str]:
    """Feature name -> original name: JSON's special characters replaced by
    "_", made unique."""
    out: dict[str, str] = {}
    for original in names:
        base = _LIGHTGBM_REFUSED.sub("_", str(original)).strip("_") or "column"
        name, n = base, 1
        while name in out:
            n += 1
            name = f"{base}_{n}"
        out[name] = original
    return out
