"""Datasets too large to search on whole, read in two streamed passes.

Pass 1 reads the target column alone (pyarrow's multi-threaded CSV reader)
and splits off the holdout exactly as for a small table (problem.split).
Pass 2 streams every column as text and keeps only the rows wanted: a
stratified, seeded sample of the training rows for the search, every
training row for a refit, or the holdout for a test. Memory holds the target
column, the rows kept and one block of the file, never the whole file.

Types are inferred on the rows kept (a column is numeric when every value
parses as a number), as pandas infers them on a whole small file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2
from services.runner import problem

BLOCK_BYTES = 16 * 1024 * 1024
MIN_SAMPLE_ROWS_PER_FOLD = 20


def column_names(dataset: dataset_pb2.Dataset) -> list[str]:
    options = dataset.csv_options
    has_header = options.has_header if options.HasField("has_header") else True
    return [p.name if has_header else f"column_{p.index}" for p in sorted(dataset.columns, key=lambda p: p.index)]


def reader(path: Path, dataset: dataset_pb2.Dataset, columns: list[str] | None = None) -> pacsv.CSVStreamingReader:
    """Stream the file in blocks, every cell as text (missing values as nulls)."""
    options = dataset.csv_options
    names = column_names(dataset)
    has_header = options.has_header if options.HasField("has_header") else True
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            encoding=options.encoding or "utf8",
            block_size=BLOCK_BYTES,
            column_names=None if has_header else names,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=options.delimiter or ",", quote_char=options.quote_char or '"', newlines_in_values=True
        ),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns,
            column_types=dict.fromkeys(names, pa.string()),
            null_values=list(options.na_values) or list(problem.DEFAULT_NA_VALUES),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def infer(column: pd.Series) -> pd.Series:
    """Numbers when every value is one (integers stay integers), else text."""
    numbers = pd.to_numeric(column, errors="coerce")
    if not (numbers.notna() | column.isna()).all():
        return column.astype(object).where(column.notna(), np.nan)  # missing as pandas reads it: NaN, not None
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype("int64")
    return numbers.astype(float)


def target_column(chunks: list[pa.DictionaryArray], task: int) -> pd.Series:
    """The target of every row, typed in Arrow without a Python object per
    row: the blocks come dictionary-encoded (an int32 per row); classes stay
    a categorical, regression targets as numbers (NaN where
    missing or not a number: refused by problem.split)."""
    encoded = pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))
    column = encoded.unify_dictionaries().combine_chunks()
    labels = column.dictionary
    for kind in (pa.int64(), pa.float64()):
        try:
            typed = pc.cast(labels, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if task == c.TASK_REGRESSION:
            return typed.take(column.indices).to_pandas()
        column = pa.DictionaryArray.from_arrays(column.indices, typed)
        break
    if task == c.TASK_REGRESSION:
        return column.to_pandas().astype(object)  # text: problem.split refuses it, naming a value
    return column.to_pandas()


def read_rows(path: Path, dataset: dataset_pb2.Dataset, wanted: np.ndarray) -> pd.DataFrame:
    """The rows numbered `wanted` (sorted data row numbers), typed, indexed by row number."""
    parts = []
    offset = 0
    for batch in reader(path, dataset):
        start, stop = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if stop > start:
            taken = batch.take(pa.array(wanted[start:stop] - offset)).to_pandas()
            taken.index = wanted[start:stop]
            parts.append(taken)
        offset += batch.num_rows
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=column_names(dataset))
    pa.default_memory_pool().release_unused()
    return frame.apply(infer)


def load(
    path: Path, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment, sample_cells: int, part: str
) -> problem.Problem:
    target = experiment.target_column
    if target not in column_names(dataset):
        raise InvalidArgument.field("experiment.target_column", f"{target!r} is not a column of the file")
    try:
        chunks = [batch.column(0).dictionary_encode() for batch in reader(path, dataset, [target])]
        y = target_column(chunks, experiment.resolved_task)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise InvalidArgument.field("dataset", f"cannot be read with its CSV options: {exc}") from None
    pa.default_memory_pool().release_unused()  # the parsed blocks: give them back, not keep them pooled
    cut = problem.split(y, experiment)
    if part == "holdout":
        wanted = cut.holdout
    elif part == "train":
        wanted = cut.search
    else:
        wanted = sample(cut, experiment, max(sample_cells // max(len(dataset.columns) - 1, 1), 1))
    X, columns, dropped = problem.features(read_rows(path, dataset, wanted), experiment, dataset)
    if part == "holdout":
        return problem.problem_of(cut, experiment, X.iloc[:0], X, columns, dropped)
    return problem.problem_of(cut, experiment, X, None, columns, dropped, sampled=len(wanted) < len(cut.search))


def sample(cut: problem.Split, experiment: experiment_pb2.Experiment, rows: int) -> np.ndarray:
    """A seeded sample of the training rows (stratified for classification),
    large enough for every fold."""
    rows = max(rows, MIN_SAMPLE_ROWS_PER_FOLD * cut.folds)
    if rows >= len(cut.search):
        return cut.search
    codes = problem.class_codes(cut.y.loc[cut.search]) if cut.task == c.TASK_CLASSIFICATION else None
    return cut.search[problem.pick(codes, len(cut.search), rows / len(cut.search), experiment.seed)]
