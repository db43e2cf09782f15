"""What every service needs to know about the metrics of automl.v1.Metric:
which task each suits, which direction is better, the task defaults."""

from __future__ import annotations

from automl.v1 import common_pb2 as c

CLASSIFICATION = frozenset(
    {c.METRIC_ACCURACY, c.METRIC_BALANCED_ACCURACY, c.METRIC_F1_MACRO, c.METRIC_ROC_AUC, c.METRIC_LOG_LOSS}
)
REGRESSION = frozenset({c.METRIC_R2, c.METRIC_RMSE, c.METRIC_MAE})
LOWER_IS_BETTER = frozenset({c.METRIC_LOG_LOSS, c.METRIC_RMSE, c.METRIC_MAE})


def higher_is_better(metric: int) -> bool:
    return metric not in LOWER_IS_BETTER


def default_metric(task: int) -> c.Metric:
    return c.METRIC_R2 if task == c.TASK_REGRESSION else c.METRIC_ACCURACY


def suits(metric: int, task: int) -> bool:
    return metric in (REGRESSION if task == c.TASK_REGRESSION else CLASSIFICATION)


def is_better(score: float, than: float | None, metric: int) -> bool:
    """Whether `score` beats `than` (None: nothing to beat)."""
    if than is None:
        return True
    return score > than if higher_is_better(metric) else score < than


def name(metric: int) -> str:
    return c.Metric.Name(metric).removeprefix("METRIC_").lower()
