"""A trained model's file, the rows it is asked about, its answers and its
holdout scores. Plain pandas and scikit-learn: nothing here knows of gRPC.

The model file (joblib, written by a fit worker) holds the fitted pipeline
and what predicting needs: the feature columns as the file named them and as
the pipeline knows them (sanitized), their types, the classes, how the
training CSV was read.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from automl.common.errors import FailedPrecondition, InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import model_pb2
from services.runner import problem

NUMERIC_KINDS = "biuf"


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
        return problem.read_csv(io.BytesIO(data), options, dtype=str)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument.field(field, f"cannot be read as CSV: {exc}") from None


def frame_from_records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows)


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


def raw_predictions(model: Loaded, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The pipeline's predictions, and its class probabilities when it has them
    (in the process that holds the model)."""
    try:
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
    classification: bool, predicted: np.ndarray, probabilities: np.ndarray | None
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


def evaluate(model: Loaded, X: pd.DataFrame, y: pd.Series) -> model_pb2.HoldoutEvaluation:
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
