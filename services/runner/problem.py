"""From a stored CSV and its experiment to the table a search works on.

Reads the file with the dataset's CSV options, checks that the problem can be
searched (each refusal names the field and the fix), leaves out the columns
that cannot be features, renames the ones LightGBM refuses, and splits off the
holdout (stratified for classification, seeded). A dataset too large to
read whole goes to services.runner.largedata; what both make and check is in
services.runner.searchable. Plain pandas and scikit-learn: nothing here knows
of gRPC or aikit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from automl.common.csvformat import CsvFormat, column_name
from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2
from services.runner import largedata

# The runner and predicting know it as problem.Problem.
from services.runner.searchable import Problem as Problem
from services.runner.searchable import (
    check_classes,
    check_not_constant,
    features,
    held_out,
    no_target,
    row_digest,
    search_settings,
    text_in_regression_target,
)

# Callers outside the runner's readers (the models' memory estimate) know it as problem.holdout_fraction.
from services.runner.searchable import holdout_fraction as holdout_fraction


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
        chunk: pd.DataFrame = next(self.reader)
        chunk.columns = [column_name(i) for i in range(chunk.shape[1])]
        return chunk


def read_csv(path: Path | IO[bytes], options: c.CsvOptions, **kwargs: Any) -> Any:
    """The file as the dataset's options say to read it; every cell that is
    not a number stays text (no date parsing, no guessing of booleans). A
    DataFrame, or with `chunksize` an iterator of them (a context manager)."""
    fmt = CsvFormat.of(options)
    frame = pd.read_csv(
        path,
        sep=fmt.delimiter,
        header=0 if fmt.has_header else None,
        encoding=fmt.encoding,
        quotechar=fmt.quote_char,
        na_values=list(fmt.na_values),
        keep_default_na=False,
        low_memory=False,
        **kwargs,
    )
    if not fmt.has_header:
        if "chunksize" in kwargs:
            return _NamedChunks(frame)
        frame.columns = [column_name(i) for i in range(frame.shape[1])]
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

    task: c.Task
    folds: int
    y: pd.Series[Any]
    """Target of the rows that have one, indexed by their data row number."""
    search: npt.NDArray[np.intp]
    """Sorted data rows of the search (training) part."""
    holdout: npt.NDArray[np.intp]
    """Sorted data rows kept out."""
    rows_without_target: int
    notes: list[str] = field(default_factory=list)


def split(target: pd.Series[Any], experiment: experiment_pb2.Experiment) -> Split:
    """Check the target of every data row and split off the holdout
    (stratified for classification, seeded)."""
    name = experiment.target_column
    task, folds, holdout = search_settings(experiment)
    target = target.reset_index(drop=True)
    has_target = target.notna().to_numpy()
    if not has_target.any():
        raise no_target(name)
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


def class_codes(y: pd.Series[Any]) -> npt.NDArray[np.intp]:
    """A small integer per row: its class's rank among the sorted labels."""
    codes, _ = pd.factorize(y, sort=True)
    return codes


def pick(
    codes: npt.NDArray[np.intp] | None, n: int, fraction: float, seed: int, min_search: int = 0
) -> npt.NDArray[np.bool_]:
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
    check_not_constant(X_search)
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


def _labels(y: pd.Series[Any]) -> pd.Series[Any]:
    """The target of the rows kept, as the models see it (categories as their labels)."""
    if isinstance(y.dtype, pd.CategoricalDtype):  # the large-data path: labels of their own type (1, not "1")
        y = y.astype(y.cat.categories.dtype)
    return y.reset_index(drop=True)


def _target(y: pd.Series[Any], name: str, task: c.Task) -> pd.Series[Any]:
    if task == c.TASK_REGRESSION:
        if isinstance(y.dtype, pd.CategoricalDtype):  # text read by the large-data path
            y = y.astype(object)
        numbers = pd.to_numeric(y, errors="coerce")
        text = y[numbers.isna()]
        if len(text):
            raise text_in_regression_target(name, str(text.iloc[0]))
        return numbers.astype(float)
    if pd.api.types.is_float_dtype(y) and (y == y.round()).all():
        return y.astype("int64")  # class codes read as floats (the column had missing values): 1, not 1.0
    return y
