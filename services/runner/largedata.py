"""Datasets too large to search on whole, read in two streamed passes, in
memory that does not grow with the file.

Pass 1 reads the target column alone (pyarrow's multi-threaded CSV reader)
and keeps only counts: rows, missing targets, rows per class, and whether
the values are numbers. The checks of a small table run on those counts.

Pass 2 streams every column as text, block by block, and decides each row's
part from a seeded hash of its row number: holdout when its first uniform is
under the holdout fraction, in the search sample when its second is under
the sampling rate. Nothing about other rows is needed, so nothing is kept
but the rows wanted: the search sample, every training row for a refit, or
the holdout for a test. Each class keeps its share up to sampling noise
(about 0.1 % of a share at a million rows), and any reader of the file finds
the same rows again from the seed; the holdout's row digest checks it.

Types are inferred on the rows kept (a column is numeric when every value
parses as a number), as pandas infers them on a whole small file.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from automl.common.csvformat import CsvFormat, column_name
from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2
from services.runner import searchable

# pyarrow keeps several blocks per reader thread in flight and in its pool: 16 MiB
# blocks cost 720 MB of resident memory on a 300 MB file, 1 MiB blocks 270 MB, at
# the same speed.
BLOCK_BYTES = 1024 * 1024
MIN_SAMPLE_ROWS_PER_FOLD = 20
HOLDOUT, SAMPLE = 1, 2  # salts of the two uniforms of a row
_GOLDEN = 0x9E3779B97F4A7C15


def column_names(dataset: dataset_pb2.Dataset) -> list[str]:
    has_header = CsvFormat.of(dataset.csv_options).has_header
    return [p.name if has_header else column_name(p.index) for p in sorted(dataset.columns, key=lambda p: p.index)]


def reader(path: Path, dataset: dataset_pb2.Dataset, columns: list[str] | None = None) -> pacsv.CSVStreamingReader:
    """Stream the file in blocks, every cell as text (missing values as nulls)."""
    fmt = CsvFormat.of(dataset.csv_options)
    names = column_names(dataset)
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            encoding=_arrow_encoding(fmt.encoding),
            block_size=BLOCK_BYTES,
            column_names=None if fmt.has_header else names,
        ),
        parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote_char, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns,
            column_types=dict.fromkeys(names, pa.string()),
            null_values=list(fmt.na_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _arrow_encoding(encoding: str) -> str:
    # pyarrow reads UTF-8 itself only when it is spelled "utf8"; any other name,
    # "utf-8" included, goes through a Python transcoder first (slower, same text).
    return "utf8" if codecs.lookup(encoding).name == "utf-8" else encoding


def uniforms(seed: int, salt: int, rows: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.float64]:
    """A uniform in [0, 1) for each row number, the same whoever reads the
    row and however the file is cut into blocks (splitmix64 of seed, salt, row)."""
    key = np.uint64((seed * _GOLDEN + salt * 0xD1B54A32D192ED03) % 2**64)
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) * np.uint64(_GOLDEN) + key
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def infer(column: pd.Series[Any]) -> pd.Series[Any]:
    """Numbers when every value is one (integers stay integers), else text."""
    numbers = pd.to_numeric(column, errors="coerce")
    if not (numbers.notna() | column.isna()).all():
        return column.astype(object).where(column.notna(), np.nan)  # missing as pandas reads it: NaN, not None
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype("int64")
    return numbers.astype(float)


@dataclass
class Counts:
    """What pass 1 learns of the target."""

    rows: int = 0
    missing: int = 0
    classes: pd.Series[Any] = field(default_factory=lambda: pd.Series(dtype="int64"))
    """Rows per label (text)."""
    text_example: str | None = None
    """A value that is not a number, if any."""


def count_target(path: Path, dataset: dataset_pb2.Dataset, target: str, task: c.Task) -> Counts:
    """Pass 1: counts of the target column, in memory that does not grow with the rows."""
    counts = Counts()
    for batch in reader(path, dataset, [target]):
        column = batch.column(0)
        counts.rows += len(column)
        counts.missing += column.null_count
        if task == c.TASK_CLASSIFICATION:
            values = pc.value_counts(column.drop_null())
            found = pd.Series(values.field("counts").to_numpy(), index=values.field("values").to_pylist())
            counts.classes = counts.classes.add(found, fill_value=0).astype("int64")
        elif counts.text_example is None:
            try:
                pc.cast(column, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                text = pd.Series(column.drop_null().to_pylist(), dtype=object)
                counts.text_example = str(text[pd.to_numeric(text, errors="coerce").isna()].iloc[0])
    return counts


def load(
    path: Path, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment, sample_cells: int, part: str
) -> searchable.Problem:
    target = experiment.target_column
    if target not in column_names(dataset):
        raise InvalidArgument.field("experiment.target_column", f"{target!r} is not a column of the file")
    try:
        counts = count_target(path, dataset, target, experiment.resolved_task)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidArgument.field("dataset", f"cannot be read with its CSV options: {exc}") from None
    task, fraction, folds, notes = check(counts, experiment)
    with_target = counts.rows - counts.missing
    search_rows = with_target * (1 - fraction)
    wanted_sample = max(sample_cells // max(len(dataset.columns) - 1, 1), MIN_SAMPLE_ROWS_PER_FOLD * folds)
    rate = min(1.0, wanted_sample / max(search_rows, 1))
    frames = []
    digest = hashlib.sha256()  # of the holdout's row numbers, as searchable.row_digest
    holdout_count = training = 0
    offset = 0
    for batch in reader(path, dataset):
        rows = np.arange(offset, offset + batch.num_rows)
        offset += batch.num_rows
        has = batch.column(target).is_valid().to_numpy(zero_copy_only=False)
        hold = has & (uniforms(experiment.seed, HOLDOUT, rows) < fraction)
        search = has & ~hold
        digest.update(rows[hold].astype("<i8").tobytes())
        holdout_count += int(hold.sum())
        training += int(search.sum())
        if part == "holdout":
            keep = hold
        elif part == "train":
            keep = search
        elif part == "all":
            keep = has
        else:
            keep = search & (uniforms(experiment.seed, SAMPLE, rows) < rate)
        if keep.any():
            taken = batch.filter(pa.array(keep)).to_pandas()
            taken.index = rows[keep]
            frames.append(taken)
    pa.default_memory_pool().release_unused()
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=column_names(dataset))
    frame = frame.apply(infer)
    y = _labels(frame.pop(target), task)
    frame[target] = 0  # features() leaves the target out by name
    X, columns, dropped = searchable.features(frame, experiment, dataset)
    made = searchable.Problem(
        X=X.reset_index(drop=True) if part != "holdout" else X.iloc[:0],
        y=y.reset_index(drop=True) if part != "holdout" else y.iloc[:0],
        task=task,
        metric=experiment.primary_metric,
        folds=folds,
        seed=experiment.seed,
        holdout_rows=[],
        search_rows=[int(r) for r in X.index] if part == "search" else [],
        columns=columns,
        dropped=dropped,
        rows_without_target=counts.missing,
        holdout_X=X.reset_index(drop=True) if part == "holdout" else None,
        holdout_y=y.reset_index(drop=True) if part == "holdout" else None,
        training_rows=training,
        sampled=part == "search" and rate < 1,
        holdout_count=holdout_count,
        holdout_digest=digest.hexdigest(),
        notes=notes,
    )
    if part == "search":
        searchable.check_not_constant(X)
    return made


def check(counts: Counts, experiment: experiment_pb2.Experiment) -> tuple[c.Task, float, int, list[str]]:
    """The checks problem.split makes on a whole target, made on its counts."""
    name = experiment.target_column
    task, folds, fraction = searchable.search_settings(experiment)
    if counts.rows == counts.missing:
        raise searchable.no_target(name)
    if task == c.TASK_REGRESSION and counts.text_example is not None:
        raise searchable.text_in_regression_target(name, counts.text_example)
    notes: list[str] = []
    if task == c.TASK_CLASSIFICATION:
        folds, notes = searchable.check_classes(counts.classes.sort_values(ascending=False), name, folds, fraction)
    return task, fraction, folds, notes


def _labels(y: pd.Series[Any], task: c.Task) -> pd.Series[Any]:
    if task == c.TASK_REGRESSION:
        return y.astype(float)
    if y.dtype.kind == "f" and (y.dropna() == y.dropna().round()).all():
        return y.astype("int64")
    return y
