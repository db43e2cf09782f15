import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_AUTO: _ClassVar[Task]
    TASK_CLASSIFICATION: _ClassVar[Task]
    TASK_REGRESSION: _ClassVar[Task]

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_ACCURACY: _ClassVar[Metric]
    METRIC_BALANCED_ACCURACY: _ClassVar[Metric]
    METRIC_F1_MACRO: _ClassVar[Metric]
    METRIC_ROC_AUC: _ClassVar[Metric]
    METRIC_LOG_LOSS: _ClassVar[Metric]
    METRIC_R2: _ClassVar[Metric]
    METRIC_RMSE: _ClassVar[Metric]
    METRIC_MAE: _ClassVar[Metric]

class ColumnType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_TYPE_UNSPECIFIED: _ClassVar[ColumnType]
    COLUMN_TYPE_NUMERIC: _ClassVar[ColumnType]
    COLUMN_TYPE_CATEGORICAL: _ClassVar[ColumnType]
    COLUMN_TYPE_TEXT: _ClassVar[ColumnType]
    COLUMN_TYPE_BOOLEAN: _ClassVar[ColumnType]
    COLUMN_TYPE_DATETIME: _ClassVar[ColumnType]
    COLUMN_TYPE_IDENTIFIER: _ClassVar[ColumnType]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_STOPPING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_STOPPED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]
    RUN_STATE_QUEUED: _ClassVar[RunState]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_TIME_BUDGET: _ClassVar[StopReason]
    STOP_REASON_TARGET_SCORE: _ClassVar[StopReason]
    STOP_REASON_MAX_MODELS: _ClassVar[StopReason]
    STOP_REASON_NO_IMPROVEMENT: _ClassVar[StopReason]
    STOP_REASON_USER: _ClassVar[StopReason]
    STOP_REASON_ERROR: _ClassVar[StopReason]
    STOP_REASON_RUNNER_LOST: _ClassVar[StopReason]
    STOP_REASON_SEARCH_EXHAUSTED: _ClassVar[StopReason]
TASK_UNSPECIFIED: Task
TASK_AUTO: Task
TASK_CLASSIFICATION: Task
TASK_REGRESSION: Task
METRIC_UNSPECIFIED: Metric
METRIC_ACCURACY: Metric
METRIC_BALANCED_ACCURACY: Metric
METRIC_F1_MACRO: Metric
METRIC_ROC_AUC: Metric
METRIC_LOG_LOSS: Metric
METRIC_R2: Metric
METRIC_RMSE: Metric
METRIC_MAE: Metric
COLUMN_TYPE_UNSPECIFIED: ColumnType
COLUMN_TYPE_NUMERIC: ColumnType
COLUMN_TYPE_CATEGORICAL: ColumnType
COLUMN_TYPE_TEXT: ColumnType
COLUMN_TYPE_BOOLEAN: ColumnType
COLUMN_TYPE_DATETIME: ColumnType
COLUMN_TYPE_IDENTIFIER: ColumnType
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_STOPPING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_STOPPED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_CANCELLED: RunState
RUN_STATE_QUEUED: RunState
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_TIME_BUDGET: StopReason
STOP_REASON_TARGET_SCORE: StopReason
STOP_REASON_MAX_MODELS: StopReason
STOP_REASON_NO_IMPROVEMENT: StopReason
STOP_REASON_USER: StopReason
STOP_REASON_ERROR: StopReason
STOP_REASON_RUNNER_LOST: StopReason
STOP_REASON_SEARCH_EXHAUSTED: StopReason

class StopConditions(_message.Message):
    __slots__ = ("max_duration", "target_score", "max_models", "no_improvement_models", "per_model_time_limit")
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    TARGET_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_MODELS_FIELD_NUMBER: _ClassVar[int]
    NO_IMPROVEMENT_MODELS_FIELD_NUMBER: _ClassVar[int]
    PER_MODEL_TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    max_duration: _duration_pb2.Duration
    target_score: float
    max_models: int
    no_improvement_models: int
    per_model_time_limit: _duration_pb2.Duration
    def __init__(self, max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., target_score: _Optional[float] = ..., max_models: _Optional[int] = ..., no_improvement_models: _Optional[int] = ..., per_model_time_limit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CsvOptions(_message.Message):
    __slots__ = ("delimiter", "has_header", "encoding", "na_values", "quote_char")
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    HAS_HEADER_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    NA_VALUES_FIELD_NUMBER: _ClassVar[int]
    QUOTE_CHAR_FIELD_NUMBER: _ClassVar[int]
    delimiter: str
    has_header: bool
    encoding: str
    na_values: _containers.RepeatedScalarFieldContainer[str]
    quote_char: str
    def __init__(self, delimiter: _Optional[str] = ..., has_header: _Optional[bool] = ..., encoding: _Optional[str] = ..., na_values: _Optional[_Iterable[str]] = ..., quote_char: _Optional[str] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("metric", "mean", "std", "train_mean")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    TRAIN_MEAN_FIELD_NUMBER: _ClassVar[int]
    metric: Metric
    mean: float
    std: float
    train_mean: float
    def __init__(self, metric: _Optional[_Union[Metric, str]] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., train_mean: _Optional[float] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("last_sequence",)
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    last_sequence: int
    def __init__(self, last_sequence: _Optional[int] = ...) -> None: ...
