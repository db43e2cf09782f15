"""From a stored CSV and its experiment to the table a search works on.

Reads the file with the dataset's CSV options, checks that the problem can be
searched (each refusal names the field and the fix), leaves out the columns
that cannot be features, renames the ones LightGBM refuses, and splits off the
holdout (stratified for classification, seeded). Plain pandas and
scikit-learn: nothing here knows of gRPC or aikit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


class _NamedChunks:
    """A chunked reader of a file without a header row: each chunk's columns
    named column_<i>, as a whole file's are."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __enter__(self) -> _NamedChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()

    def __iter__(self) -> _NamedChunks:
        return self

    def __next__(self) -> pd.DataFrame:
        chunk = next(self.reader)
        chunk.columns = [f"column_{i}" for i in range(chunk.shape[1])]
        return chunk


def read_csv(path: Path, options: c.CsvOptions, **kwargs: Any) -> Any:
    """The file as the dataset's options say to read it; every cell that is
    not a number stays text (no date parsing, no guessing of booleans). A
    DataFrame, or with `chunksize` an iterator of them (a context manager)."""
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
        if "chunksize" in kwargs:
            return _NamedChunks(frame)
        frame.columns = [f"column_{i}" for i in range(frame.shape[1])]
    return frame


def load(
    path: Path,
    dataset: dataset_pb2.Dataset,
    experiment: experiment_pb2.Experiment,
    sample_cells: int = 0,
    part: str = "search",
) -> Problem:
    """Read and check the experiment's data; InvalidArgument says what cannot work.

    A dataset of more than `sample_cells` cells is read in two streamed passes
    (services.runner.largedata), and `part` says which rows X holds: "search"
    a stratified sample of the training rows, "train" every training row,
    "all" every row with a target (the holdout too), "holdout" none (the
    holdout rows are in holdout_X)."""
    if sample_cells and dataset.row_count * max(len(dataset.columns) - 1, 1) > sample_cells:
        from services.runner import largedata

        return largedata.load(path, dataset, experiment, sample_cells, part)
    try:
        frame = read_csv(path, dataset.csv_options)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.field("dataset", f"cannot be read with its CSV options: {exc}") from None
    made = prepare(frame, dataset, experiment)
    if part != "all" or made.holdout_X is None or made.holdout_y is None:
        return made
    return replace(
        made,
        X=pd.concat([made.X, made.holdout_X], ignore_index=True),
        y=pd.concat([made.y, made.holdout_y], ignore_index=True),
        holdout_X=None,
        holdout_y=None,
    )


@dataclass
class Split:
    """Which data rows (0-based, of the whole file) go where."""

    task: int
    folds: int
    y: pd.Series
    """Target of the rows that have one, indexed by their data row number."""
    search: np.ndarray
    """Sorted data rows of the search (training) part."""
    holdout: np.ndarray
    """Sorted data rows kept out."""
    rows_without_target: int
    notes: list[str] = field(default_factory=list)


def split(target: pd.Series, experiment: experiment_pb2.Experiment) -> Split:
    """Check the target of every data row and split off the holdout
    (stratified for classification, seeded)."""
    name = experiment.target_column
    task = experiment.resolved_task
    if task not in (c.TASK_CLASSIFICATION, c.TASK_REGRESSION):
        raise InvalidArgument.field("experiment.resolved_task", "must be TASK_CLASSIFICATION or TASK_REGRESSION")
    folds = experiment.cv_folds or DEFAULT_FOLDS
    if not 2 <= folds <= 20:
        raise InvalidArgument.field("experiment.cv_folds", f"{folds}: use 2 to 20")
    holdout = holdout_fraction(experiment)
    if not 0 < holdout <= 0.5:
        raise InvalidArgument.field("experiment.holdout_fraction", f"{holdout}: use 0 to 0.5 (0 for 0.2)")
    target = target.reset_index(drop=True)
    has_target = target.notna().to_numpy()
    if not has_target.any():
        raise InvalidArgument.field("experiment.target_column", f"{name!r} has no value on any row: nothing to learn")
    y = _target(target[has_target], name, task)
    rows = np.flatnonzero(has_target)
    codes = class_codes(y) if task == c.TASK_CLASSIFICATION else None
    notes: list[str] = []
    requested = folds
    if codes is not None:
        folds, notes = check_classes(y.value_counts(), name, folds, holdout, stratified=True)
    kept_out = pick(codes, len(rows), holdout, experiment.seed, min_search=requested)
    search = np.flatnonzero(~kept_out)
    if len(search) < 2 * folds:
        raise InvalidArgument.field(
            "dataset",
            f"{len(search)} rows left for the search: {folds}-fold cross-validation needs {2 * folds} or more",
        )
    return Split(task, folds, y, rows[search], rows[kept_out], int((~has_target).sum()), notes)


def class_codes(y: pd.Series) -> np.ndarray:
    """A small integer per row: its class's rank among the sorted labels."""
    codes, _ = pd.factorize(y, sort=True)
    return codes


def held_out(count: int, fraction: float, min_search: int) -> int:
    """Rows of a class of `count` rows that go to the holdout: its share (at
    least one), as long as `min_search` rows stay for the cross-validation;
    a class too small for both is kept whole in training."""
    return max(0, min(max(int(count * fraction + 0.5), 1), count - min_search))


def pick(codes: np.ndarray | None, n: int, fraction: float, seed: int, min_search: int = 0) -> np.ndarray:
    """A seeded choice of `fraction` of n positions (of each class's positions
    when codes are given: at least one of each class, but never so many that
    fewer than `min_search` rows of a class stay out of it), as a boolean mask.

    Written for tens of millions of rows: a sort of the codes and a mask, where
    scikit-learn's stratified splitter needs gigabytes."""
    rng = np.random.RandomState(seed % 2**32)
    chosen = np.zeros(n, dtype=bool)
    if codes is None:
        chosen[rng.permutation(n)[: int(n * fraction + 0.5)]] = True
        return chosen
    order = np.argsort(codes, kind="stable")
    start = 0
    for count in np.bincount(codes):
        members = order[start : start + count]
        start += count
        take = held_out(count, fraction, min_search)
        chosen[members[rng.permutation(count)[:take]]] = True
    return chosen


def prepare(frame: pd.DataFrame, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment) -> Problem:
    """The Problem of a table read whole."""
    if experiment.target_column not in frame.columns:
        raise InvalidArgument.field(
            "experiment.target_column", f"{experiment.target_column!r} is not a column of the file"
        )
    frame = frame.reset_index(drop=True)
    cut = split(frame[experiment.target_column], experiment)
    X, columns, dropped = features(frame, experiment, dataset)
    return problem_of(cut, experiment, X.loc[cut.search], X.loc[cut.holdout], columns, dropped)


def problem_of(
    cut: Split,
    experiment: experiment_pb2.Experiment,
    X_search: pd.DataFrame,
    X_holdout: pd.DataFrame | None,
    columns: dict[str, str],
    dropped: dict[str, str],
    sampled: bool = False,
) -> Problem:
    """A Problem of rows already cut: X_search holds the search rows (or a
    sample of them), X_holdout the holdout rows, both indexed by data row."""
    if len(X_search) and all(X_search[name].nunique(dropna=True) <= 1 for name in X_search.columns):
        raise InvalidArgument.field(
            "dataset", "every feature column is constant on the search rows: there is nothing to learn from"
        )
    return Problem(
        X=X_search.reset_index(drop=True),
        y=_labels(cut.y.loc[X_search.index]),
        task=cut.task,
        metric=experiment.primary_metric,
        folds=cut.folds,
        seed=experiment.seed,
        holdout_rows=[int(r) for r in cut.holdout],
        search_rows=[int(r) for r in X_search.index],
        columns=columns,
        dropped=dropped,
        rows_without_target=cut.rows_without_target,
        holdout_X=None if X_holdout is None else X_holdout.reset_index(drop=True),
        holdout_y=None if X_holdout is None else _labels(cut.y.loc[X_holdout.index]),
        training_rows=len(cut.search),
        sampled=sampled,
        notes=list(cut.notes),
        holdout_count=len(cut.holdout),
        holdout_digest=row_digest(cut.holdout),
    )


def row_digest(rows: np.ndarray) -> str:
    """sha256 of row numbers (ascending, as little-endian int64). largedata
    computes the same digest block by block."""
    return hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes()).hexdigest()


def _labels(y: pd.Series) -> pd.Series:
    """The target of the rows kept, as the models see it (categories as their labels)."""
    if isinstance(y.dtype, pd.CategoricalDtype):  # the large-data path: labels of their own type (1, not "1")
        y = y.astype(y.cat.categories.dtype)
    return y.reset_index(drop=True)


def _target(y: pd.Series, name: str, task: int) -> pd.Series:
    if task == c.TASK_REGRESSION:
        if isinstance(y.dtype, pd.CategoricalDtype):  # text read by the large-data path
            y = y.astype(object)
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


def check_classes(
    counts: pd.Series, name: str, folds: int, holdout: float, stratified: bool = False
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
        kept = [label for label, n in counts.items() if held_out(int(n), holdout, folds) == 0]
        if kept:
            notes.append(
                f"classes {_listed(counts[kept])} are too small to give rows to the holdout: "
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


def _listed(counts: pd.Series, most: int = 5) -> str:
    """The first classes by name and size; a note stays short whatever the number of classes."""
    listed = ", ".join(f"{str(label)[:40]!r} ({n} row{'s' if n != 1 else ''})" for label, n in counts[:most].items())
    return listed + (f" and {len(counts) - most} more" if len(counts) > most else "")


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
