"""A trained model's file, the rows it is asked about, its answers and its
holdout scores. Plain pandas and scikit-learn: nothing here knows of gRPC.

The model file (joblib, written by a fit worker) holds the fitted pipeline
and what predicting needs: the feature columns as the file named them and as
the pipeline knows them (sanitized), their types, the classes, how the
training CSV was read.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn import metrics as skm

from automl.common import csvformat
from automl.common.errors import FailedPrecondition, InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import model_pb2
from services.runner import problem

NUMERIC_KINDS = "biuf"
SMALL_CSV_BYTES = 64 * 1024
"""A CSV up to this size, or records up to SMALL_RECORDS rows, is first tried
on the quick path (quick_columns): plain Python on each cell, no pandas until
the model's worker makes the one DataFrame the pipeline takes."""
SMALL_RECORDS = 1000


@dataclass
class Loaded:
    """A model file, loaded."""

    model: Any
    features: dict[str, str]
    """Sanitized name -> name in the file, in training order."""
    numeric: dict[str, bool]
    """Name in the file -> whether the pipeline was trained on numbers."""
    classification: bool
    classes: list[Any]
    csv_options: dict[str, Any]

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> Loaded:
        return cls(
            model=bundle["model"],
            features=bundle["features"],
            numeric=bundle["numeric"],
            classification=bundle["classification"],
            classes=list(bundle.get("classes", [])),
            csv_options=bundle.get("csv_options", {}),
        )

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.classes]

    @functools.cached_property
    def argmax_classes(self) -> npt.NDArray[Any] | None:
        """See one_pass_classes (looked up once per loaded model)."""
        return one_pass_classes(self.model) if self.classification else None


def bundle_fields(data: problem.Problem, csv_options: c.CsvOptions) -> dict[str, Any]:
    """What a fit worker stores beside the fitted pipeline."""
    return {
        "features": data.columns,
        "numeric": {data.columns[name]: data.X[name].dtype.kind in NUMERIC_KINDS for name in data.X.columns},
        "classification": data.task == c.TASK_CLASSIFICATION,
        "csv_options": {
            "delimiter": csv_options.delimiter,
            "encoding": csv_options.encoding,
            "na_values": list(csv_options.na_values),
            "quote_char": csv_options.quote_char,
        },
    }


# ---------------------------------------------------------------- inputs


def frame_from_csv(data: bytes, options: c.CsvOptions | None, model: Loaded, field: str = "csv") -> pd.DataFrame:
    """Rows of a CSV with a header line; options default to the training file's."""
    if options is None or options.ByteSize() == 0:
        options = c.CsvOptions(**model.csv_options)
    try:
        frame: pd.DataFrame = problem.read_csv(io.BytesIO(data), options, dtype=str)
        return frame
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.field(field, f"cannot be read as CSV: {exc}") from None


def frame_from_records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows)


# ------------------------------------------------- inputs, the quick path
#
# A one-row Predict (an application scoring one customer at a time) spent
# more time in pandas (read_csv, from_records, a dozen Series operations per
# column in features()) and in pickling a DataFrame to the worker than the
# pipeline spent predicting. Small inputs in the common forms take this path
# instead: cells become plain lists here, and the DataFrame the pipeline
# takes is built once, in the worker, where the lists are unpickled (Columns).
#
# The path is strict: whatever it does not handle exactly as read_csv +
# features() would (quoting it cannot be sure of, a line of another length,
# duplicate or blank names, a number pandas would round differently, a value
# to refuse...) makes it answer None, and the caller takes the full path,
# which gives the same answer or the same error as before. The tests compare
# both paths cell by cell (tests/runner/test_models.py).


@dataclass
class Columns:
    """A model's feature columns of some rows, as plain lists: numbers
    (float, NaN for missing) or text (str, None for missing), in the model's
    order and named as the pipeline knows them. Pickled as the lists; a
    DataFrame, the one `features` would make, where unpickled."""

    names: list[str]
    numeric: list[bool]
    values: list[list[Any]]

    def __len__(self) -> int:
        return len(self.values[0]) if self.values else 0

    def frame(self) -> pd.DataFrame:
        return frame_of_columns(self.names, self.numeric, self.values)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (frame_of_columns, (self.names, self.numeric, self.values))


def frame_of_columns(names: list[str], numeric: list[bool], values: list[list[Any]]) -> pd.DataFrame:
    data = {}
    for name, is_number, cells in zip(names, numeric, values, strict=True):
        if is_number:
            data[name] = np.array(cells, dtype=float)
        else:
            column = np.empty(len(cells), dtype=object)
            column[:] = cells
            data[name] = column
    return pd.DataFrame(data, copy=False)


_DECIMAL = re.compile(r"[+-]?([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]{1,3}))?")


def _number(text: str) -> float | None:
    """A decimal as pandas' to_numeric reads it, or None when this may differ
    from pandas (it rounds mantissas of more than 15 digits and large powers
    of ten its own way; float() rounds correctly) or is no plain decimal."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return None
    whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    digits = len(whole) + len(fraction)
    if digits == 0 or digits > 15 or abs(int(exponent or 0) - len(fraction)) > 22:
        return None
    return float(text)


@functools.lru_cache(maxsize=64)
def _csv_dialect(delimiter: str, quote: str, na_values: tuple[str, ...]) -> tuple[re.Pattern[str], frozenset[str]]:
    """A line of fields each either quoted whole (quotes inside doubled) or
    free of quotes; the strings read_csv takes for missing (with its variants
    of numbers: "-1" makes "-1.0" missing too)."""
    d, q = re.escape(delimiter), re.escape(quote)
    field = f"(?:{q}(?:[^{q}]|{q}{q})*{q}|[^{d}{q}]*)"
    from pandas.io.parsers.readers import _clean_na_values  # type: ignore[attr-defined]  # private: not in the stubs

    strings, _ = _clean_na_values(list(na_values), keep_default_na=False)
    return re.compile(f"{field}(?:{d}{field})*"), frozenset(v for v in strings if isinstance(v, str))


def quick_csv(data: bytes, options: c.CsvOptions | None, model: Loaded) -> tuple[list[str], list[list[Any]]] | None:
    """A small CSV's header and rows (cells as str, None for missing) exactly
    as frame_from_csv reads them, or None (then use frame_from_csv)."""
    if len(data) > SMALL_CSV_BYTES:
        return None
    if options is None or options.ByteSize() == 0:
        delimiter, encoding, quote = (model.csv_options.get(k) for k in ("delimiter", "encoding", "quote_char"))
        na_values, has_header = model.csv_options.get("na_values"), True
    else:
        delimiter, encoding, quote, na_values = (
            options.delimiter,
            options.encoding,
            options.quote_char,
            options.na_values,
        )
        has_header = options.has_header if options.HasField("has_header") else csvformat.HAS_HEADER
    delimiter, quote = delimiter or csvformat.DELIMITER, quote or csvformat.QUOTE_CHAR
    if (
        not has_header
        or (encoding or csvformat.ENCODING).lower().replace("_", "-") not in ("utf-8", "utf8")
        or delimiter not in (",", ";", "|", "\t")
        or quote not in ('"', "'")
    ):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text or "\x00" in text or text.startswith("\ufeff"):
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return None
    line_pattern, missing = _csv_dialect(delimiter, quote, tuple(na_values or csvformat.NA_VALUES))
    parsed = []
    for line in lines:
        if not line.strip() or line_pattern.fullmatch(line) is None:
            return None  # blank lines (read_csv skips them), stray quotes
        if quote in line:
            parsed.append(next(csv.reader([line], delimiter=delimiter, quotechar=quote, doublequote=True)))
        else:
            parsed.append(line.split(delimiter))
    header = parsed[0]
    if len(set(header)) != len(header) or "" in header:
        return None  # read_csv would rename them ("a.1", "Unnamed: 0")
    width = len(header)
    rows = []
    for cells in parsed[1:]:
        if len(cells) != width:
            return None
        rows.append([None if cell in missing else cell for cell in cells])
    return header, rows


def quick_records(message: model_pb2.PredictRecords) -> list[dict[str, Any]] | None:
    """Struct rows as dicts of None, float and str, or None when a row holds
    anything else (bool, nested, NaN or Infinity: then use records())."""
    if not 0 < len(message.rows) <= SMALL_RECORDS:
        return None
    rows = []
    for row in message.rows:
        out: dict[str, Any] = {}
        for key, value in row.fields.items():
            kind = value.WhichOneof("kind")
            if kind == "string_value":
                out[key] = value.string_value
            elif kind == "number_value":
                number = value.number_value
                if not math.isfinite(number):
                    return None
                out[key] = number
            elif kind == "null_value":
                out[key] = None
            else:
                return None
        rows.append(out)
    return rows


def quick_columns(
    header: list[str] | None, rows: list[list[Any]] | list[dict[str, Any]], model: Loaded
) -> Columns | None:
    """The model's feature columns of rows from quick_csv (`header` given) or
    quick_records (dicts; a key absent from a row is a missing value there),
    exactly as `features` makes them; None when `features` would refuse them
    or when this is not sure to agree with it."""
    if not rows:
        return None
    if header is not None:
        table = cast("list[list[Any]]", rows)  # with a header: quick_csv's rows, lists of cells
        where = {name: i for i, name in enumerate(header)}
        position = [where[original] for original in model.features.values() if original in where]
        if len(position) != len(model.features):
            return None
        columns = [[row[i] for row in table] for i in position]
    else:
        records = cast("list[dict[str, Any]]", rows)  # without: quick_records' rows, dicts
        present: set[str] = set()
        for record in records:
            present.update(record)
        if any(original not in present for original in model.features.values()):
            return None
        columns = [[record.get(original) for record in records] for original in model.features.values()]
    names, numeric, values = [], [], []
    for (sanitized, original), cells in zip(model.features.items(), columns, strict=True):
        is_number = model.numeric[original]
        out: list[Any] = []
        if is_number:
            for cell in cells:
                if cell is None or cell == "":
                    out.append(math.nan)
                elif isinstance(cell, float):
                    out.append(cell)
                elif (number := _number(cell)) is not None:
                    out.append(number)
                else:
                    return None  # maybe refused, maybe read otherwise: the full path says
        else:
            for cell in cells:
                out.append(cell if cell is None or isinstance(cell, str) else _text(cell))
        names.append(sanitized)
        numeric.append(is_number)
        values.append(out)
    return Columns(names, numeric, values)


def features(frame: pd.DataFrame, model: Loaded, field: str, first_row: int = 0) -> pd.DataFrame:
    """The model's feature columns of `frame`, typed as in training and named
    as the pipeline knows them. Extra columns are ignored; missing ones and
    values of the wrong type are refused, named."""
    if frame.empty and len(frame.columns) == 0:
        raise InvalidArgument.field(field, "no rows to predict")
    missing = [name for name in model.features.values() if name not in frame.columns]
    if missing:
        listed = ", ".join(str(name)[:80] for name in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise InvalidArgument.field(field, f"missing columns the model needs: {listed}{more}")
    out = pd.DataFrame(index=frame.index)
    for sanitized, original in model.features.items():
        column = frame[original]
        if model.numeric[original]:
            text = column.where(column.notna(), None)
            numbers = pd.to_numeric(text.replace("", None), errors="coerce")
            bad = numbers.isna() & text.notna() & (text.astype(str).str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise InvalidArgument.field(
                    field,
                    f"column {_shown(original)} takes numbers; row {first_row + row} has {_shown(column.iloc[row])}",
                )
            out[sanitized] = numbers.astype(float)
        else:
            out[sanitized] = column.map(lambda v: v if v is None or isinstance(v, str) else _text(v)).astype(object)
    return out


def _shown(value: Any, limit: int = 80) -> str:
    """A value quoted in an error, cut: errors travel in gRPC trailers, which a
    client takes up to 16 KiB of (past that, it reports RESOURCE_EXHAUSTED)."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _text(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


# ---------------------------------------------------------------- answers


def predict(model: Loaded, X: pd.DataFrame) -> list[model_pb2.Prediction]:
    """One prediction per row, in order; class probabilities when the model has them."""
    return answers(model.classification, *raw_predictions(model, X))


def _argmax_predictors() -> tuple[type, ...]:
    """Classifiers whose predict is, in the versions this project pins, the
    classes_ taken at the argmax of their own predict_proba (read in their
    source; tests/runner/test_models.py checks it on fitted models). Not
    HistGradientBoosting (its binary predict thresholds the raw score, which
    can differ from the rounded probability) nor the linear models."""
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from services.runner.ensemble import GreedyEnsembleClassifier

    return (RandomForestClassifier, ExtraTreesClassifier, LGBMClassifier, GreedyEnsembleClassifier)


def one_pass_classes(model: Any) -> npt.NDArray[Any] | None:
    """The classes to take at the argmax of `model`'s class probabilities when
    that is exactly its predict: then one pass of the pipeline (its transforms
    run once, not twice) gives both answers. None otherwise. The final step of
    a pipeline (aikit's GraphPipeline or scikit-learn's) decides."""
    final = model
    while (inner := getattr(final, "_final_estimator", None)) is not None and inner is not final:
        final = inner
    if type(final) not in _argmax_predictors() or getattr(final, "n_outputs_", 1) != 1:
        return None
    if callable(getattr(final, "objective", None)):  # LightGBM with its own objective: predict returns raw scores
        return None
    return np.asarray(final.classes_)


def raw_predictions(model: Loaded, X: pd.DataFrame) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    """The pipeline's predictions, and its class probabilities when it has them
    (in the process that holds the model)."""
    probabilities: npt.NDArray[Any] | None
    try:
        classes = model.argmax_classes
        if classes is not None:
            probabilities = np.asarray(model.model.predict_proba(X))
            return classes.take(np.argmax(probabilities, axis=1), axis=0), probabilities
        predicted = np.asarray(model.model.predict(X))
        probabilities = (
            np.asarray(model.model.predict_proba(X))
            if model.classification and hasattr(model.model, "predict_proba")
            else None
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise FailedPrecondition(f"the model cannot predict these rows: {type(exc).__name__}: {exc}") from None
    return predicted, probabilities


def answers(
    classification: bool, predicted: npt.NDArray[Any], probabilities: npt.NDArray[Any] | None
) -> list[model_pb2.Prediction]:
    """Prediction messages of raw predictions, one per row."""
    out = []
    for i, value in enumerate(predicted):
        if classification:
            prediction = model_pb2.Prediction(label=str(value))
            if probabilities is not None:
                prediction.probabilities.extend(float(p) for p in probabilities[i])
        else:
            prediction = model_pb2.Prediction(value=float(value))
        out.append(prediction)
    return out


def evaluate(model: Loaded, X: pd.DataFrame, y: pd.Series[Any]) -> model_pb2.HoldoutEvaluation:
    """Scores on the holdout: accuracy, balanced accuracy, F1 (macro), ROC AUC,
    log loss and the confusion matrix for classification; RMSE, MAE and R2 for
    regression."""
    evaluation = model_pb2.HoldoutEvaluation(row_count=len(y))
    evaluation.create_time.GetCurrentTime()
    predicted = model.model.predict(X)
    if not model.classification:
        truth = y.to_numpy(dtype=float)
        values = {
            c.METRIC_RMSE: math.sqrt(skm.mean_squared_error(truth, predicted)),
            c.METRIC_MAE: skm.mean_absolute_error(truth, predicted),
            c.METRIC_R2: skm.r2_score(truth, predicted),
        }
    else:
        truth = np.asarray([str(v) for v in y])
        labels_predicted = np.asarray([str(v) for v in predicted])
        labels = model.labels
        values = {
            c.METRIC_ACCURACY: skm.accuracy_score(truth, labels_predicted),
            c.METRIC_BALANCED_ACCURACY: skm.balanced_accuracy_score(truth, labels_predicted),
            c.METRIC_F1_MACRO: skm.f1_score(truth, labels_predicted, average="macro", labels=labels, zero_division=0),
        }
        if hasattr(model.model, "predict_proba"):
            proba = model.model.predict_proba(X)
            values[c.METRIC_LOG_LOSS] = skm.log_loss(truth, proba, labels=labels)
            present = sorted(set(truth))
            if len(present) > 1:  # ROC AUC is undefined with one class in the holdout
                if len(labels) == 2:
                    values[c.METRIC_ROC_AUC] = skm.roc_auc_score(truth == labels[1], proba[:, 1])
                else:
                    keep = [labels.index(label) for label in present]
                    scores = proba[:, keep] / proba[:, keep].sum(axis=1, keepdims=True)
                    values[c.METRIC_ROC_AUC] = skm.roc_auc_score(
                        truth, scores, multi_class="ovr", average="macro", labels=present
                    )
        matrix = skm.confusion_matrix(truth, labels_predicted, labels=labels)
        evaluation.confusion_matrix.labels.extend(labels)
        for row in matrix:
            evaluation.confusion_matrix.rows.add(counts=[int(n) for n in row])
    for metric, value in values.items():
        evaluation.metrics.add(metric=metric, value=float(value))
    return evaluation
