"""From a stored CSV and its experiment to the table a search works on.

Reads the file with the dataset's CSV options, checks that the problem can be
searched (each refusal names the field and the fix), leaves out the columns
that cannot be features, renames the ones LightGBM refuses, and splits off the
holdout (stratified for classification, seeded). Plain pandas and
scikit-learn: nothing here knows of gRPC or aikit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2

DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
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
    y: pd.Series
    task: int
    metric: int
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
    holdout_y: pd.Series | None = None

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
            "holdout_rows": self.holdout_rows,
            "search_row_count": len(self.search_rows),
            "feature_columns": self.columns,
            "dropped_columns": self.dropped,
            "rows_without_target": self.rows_without_target,
        }


def holdout_fraction(experiment: experiment_pb2.Experiment) -> float:
    return experiment.holdout_fraction or DEFAULT_HOLDOUT


def read_csv(path: Path, options: c.CsvOptions, **kwargs: Any) -> pd.DataFrame:
    """The file as the dataset's options say to read it; every cell that is
    not a number stays text (no date parsing, no guessing of booleans)."""
    has_header = options.has_header if options.HasField("has_header") else True
    frame = pd.read_csv(
        path,
        sep=options.delimiter or ",",
        header=0 if has_header else None,
        encoding=options.encoding or "utf-8",
        quotechar=options.quote_char or '"',
        na_values=list(options.na_values) or list(DEFAULT_NA_VALUES),
        keep_default_na=False,
        low_memory=False,
        **kwargs,
    )
    if not has_header:
        frame.columns = [f"column_{i}" for i in range(frame.shape[1])]
    return frame


def load(path: Path, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment) -> Problem:
    """Read and check the experiment's data; InvalidArgument says what cannot work."""
    try:
        frame = read_csv(path, dataset.csv_options)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.field("dataset", f"cannot be read with its CSV options: {exc}") from None
    return prepare(frame, dataset, experiment)


def prepare(frame: pd.DataFrame, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment) -> Problem:
    target = experiment.target_column
    if target not in frame.columns:
        raise InvalidArgument.field("experiment.target_column", f"{target!r} is not a column of the file")
    task = experiment.resolved_task
    if task not in (c.TASK_CLASSIFICATION, c.TASK_REGRESSION):
        raise InvalidArgument.field("experiment.resolved_task", "must be TASK_CLASSIFICATION or TASK_REGRESSION")
    folds = experiment.cv_folds or DEFAULT_FOLDS
    if not 2 <= folds <= 20:
        raise InvalidArgument.field("experiment.cv_folds", f"{folds}: use 2 to 20")
    holdout = holdout_fraction(experiment)
    if not 0 < holdout <= 0.5:
        raise InvalidArgument.field("experiment.holdout_fraction", f"{holdout}: use 0 to 0.5 (0 for 0.2)")

    frame = frame.reset_index(drop=True)
    y = frame[target]
    has_target = y.notna().to_numpy()
    if not has_target.any():
        raise InvalidArgument.field("experiment.target_column", f"{target!r} has no value on any row: nothing to learn")
    y = _target(y[has_target], target, task)
    rows = np.flatnonzero(has_target)

    X, columns, dropped = _features(frame.loc[has_target], target, experiment, dataset)
    seed = experiment.seed
    stratify = y.to_numpy() if task == c.TASK_CLASSIFICATION else None
    if stratify is not None:
        _check_classes(y, target, folds, holdout)
    try:
        search, kept_out = train_test_split(
            np.arange(len(rows)), test_size=holdout, random_state=seed % 2**32, stratify=stratify
        )
    except ValueError as exc:  # too few rows for the fraction
        raise InvalidArgument.field("experiment.holdout_fraction", f"cannot split {len(rows)} rows: {exc}") from None
    search = np.sort(search)
    if len(search) < 2 * folds:
        raise InvalidArgument.field(
            "dataset",
            f"{len(search)} rows left for the search: {folds}-fold cross-validation needs {2 * folds} or more",
        )
    X_search = X.iloc[search].reset_index(drop=True)
    if all(X_search[name].nunique(dropna=True) <= 1 for name in X_search.columns):
        raise InvalidArgument.field(
            "dataset", "every feature column is constant on the search rows: there is nothing to learn from"
        )
    return Problem(
        X=X_search,
        y=y.iloc[search].reset_index(drop=True),
        task=task,
        metric=experiment.primary_metric,
        folds=folds,
        seed=seed,
        holdout_rows=sorted(int(r) for r in rows[kept_out]),
        search_rows=[int(r) for r in rows[search]],
        columns=columns,
        dropped=dropped,
        rows_without_target=int((~has_target).sum()),
        holdout_X=X.iloc[np.sort(kept_out)].reset_index(drop=True),
        holdout_y=y.iloc[np.sort(kept_out)].reset_index(drop=True),
    )


def _target(y: pd.Series, name: str, task: int) -> pd.Series:
    if task == c.TASK_REGRESSION:
        numbers = pd.to_numeric(y, errors="coerce")
        text = y[numbers.isna()]
        if len(text):
            raise InvalidArgument.field(
                "experiment.task",
                f"regression needs a numeric target; {name!r} holds text such as {str(text.iloc[0])!r}: "
                "use TASK_CLASSIFICATION or another target",
            )
        return numbers.astype(float)
    if pd.api.types.is_float_dtype(y) and (y == y.round()).all():
        return y.astype("int64")  # class codes read as floats (the column had missing values): 1, not 1.0
    return y


def _check_classes(y: pd.Series, name: str, folds: int, holdout: float) -> None:
    counts = y.value_counts()
    if len(counts) < 2:
        raise InvalidArgument.field(
            "experiment.target_column", f"{name!r} has one class only ({counts.index[0]!r}): nothing to learn"
        )
    # Each class needs a row in the holdout and `folds` rows in the search so
    # that every fold of the stratified cross-validation sees it.
    needed = max(2, int(np.ceil(folds / (1 - holdout))) + 1)
    rare = counts[counts < needed]
    if len(rare):
        listed = ", ".join(f"{label!r} ({n} row{'s' if n > 1 else ''})" for label, n in rare.items())
        raise InvalidArgument.field(
            "experiment.target_column",
            f"too few rows in classes {listed}: a stratified holdout and {folds}-fold cross-validation need "
            f"{needed} rows per class; remove or merge these classes, or lower cv_folds",
        )


def _features(
    frame: pd.DataFrame, target: str, experiment: experiment_pb2.Experiment, dataset: dataset_pb2.Dataset
) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
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
