import datetime

from automl.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainedModel(_message.Message):
    __slots__ = ("name", "model_result", "run", "experiment", "state", "error_message", "task", "feature_columns", "classes", "training_rows", "fit_time_seconds", "artifact_size_bytes", "artifact_sha256", "holdout_evaluation", "create_time", "update_time", "artifact", "includes_holdout")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[TrainedModel.State]
        STATE_TRAINING: _ClassVar[TrainedModel.State]
        STATE_READY: _ClassVar[TrainedModel.State]
        STATE_FAILED: _ClassVar[TrainedModel.State]
    STATE_UNSPECIFIED: TrainedModel.State
    STATE_TRAINING: TrainedModel.State
    STATE_READY: TrainedModel.State
    STATE_FAILED: TrainedModel.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ROWS_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_EVALUATION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    INCLUDES_HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_result: str
    run: str
    experiment: str
    state: TrainedModel.State
    error_message: str
    task: _common_pb2.Task
    feature_columns: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    classes: _containers.RepeatedScalarFieldContainer[str]
    training_rows: int
    fit_time_seconds: float
    artifact_size_bytes: int
    artifact_sha256: str
    holdout_evaluation: HoldoutEvaluation
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    artifact: str
    includes_holdout: bool
    def __init__(self, name: _Optional[str] = ..., model_result: _Optional[str] = ..., run: _Optional[str] = ..., experiment: _Optional[str] = ..., state: _Optional[_Union[TrainedModel.State, str]] = ..., error_message: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., feature_columns: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ..., classes: _Optional[_Iterable[str]] = ..., training_rows: _Optional[int] = ..., fit_time_seconds: _Optional[float] = ..., artifact_size_bytes: _Optional[int] = ..., artifact_sha256: _Optional[str] = ..., holdout_evaluation: _Optional[_Union[HoldoutEvaluation, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., artifact: _Optional[str] = ..., includes_holdout: _Optional[bool] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: _common_pb2.ColumnType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.ColumnType, str]] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("metric", "value")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    metric: _common_pb2.Metric
    value: float
    def __init__(self, metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., value: _Optional[float] = ...) -> None: ...

class ConfusionMatrix(_message.Message):
    __slots__ = ("labels", "rows")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[ConfusionMatrixRow]
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[ConfusionMatrixRow, _Mapping]]] = ...) -> None: ...

class ConfusionMatrixRow(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, counts: _Optional[_Iterable[int]] = ...) -> None: ...

class HoldoutEvaluation(_message.Message):
    __slots__ = ("metrics", "confusion_matrix", "row_count", "create_time")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricValue]
    confusion_matrix: ConfusionMatrix
    row_count: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., confusion_matrix: _Optional[_Union[ConfusionMatrix, _Mapping]] = ..., row_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrainModelRequest(_message.Message):
    __slots__ = ("model_result", "include_holdout")
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    model_result: str
    include_holdout: bool
    def __init__(self, model_result: _Optional[str] = ..., include_holdout: _Optional[bool] = ...) -> None: ...

class GetTrainedModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListTrainedModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListTrainedModelsResponse(_message.Message):
    __slots__ = ("trained_models", "next_page_token", "total_size")
    TRAINED_MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    trained_models: _containers.RepeatedCompositeFieldContainer[TrainedModel]
    next_page_token: str
    total_size: int
    def __init__(self, trained_models: _Optional[_Iterable[_Union[TrainedModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class TestModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PredictRecords(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    def __init__(self, rows: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("name", "csv", "records", "csv_options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CSV_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    csv: bytes
    records: PredictRecords
    csv_options: _common_pb2.CsvOptions
    def __init__(self, name: _Optional[str] = ..., csv: _Optional[bytes] = ..., records: _Optional[_Union[PredictRecords, _Mapping]] = ..., csv_options: _Optional[_Union[_common_pb2.CsvOptions, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "value", "probabilities")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    label: str
    value: float
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, label: _Optional[str] = ..., value: _Optional[float] = ..., probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("classes", "predictions")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedScalarFieldContainer[str]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, classes: _Optional[_Iterable[str]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class PredictStreamHeader(_message.Message):
    __slots__ = ("name", "csv_options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CSV_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    csv_options: _common_pb2.CsvOptions
    def __init__(self, name: _Optional[str] = ..., csv_options: _Optional[_Union[_common_pb2.CsvOptions, _Mapping]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("header", "csv_chunk", "records")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CSV_CHUNK_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    header: PredictStreamHeader
    csv_chunk: bytes
    records: PredictRecords
    def __init__(self, header: _Optional[_Union[PredictStreamHeader, _Mapping]] = ..., csv_chunk: _Optional[bytes] = ..., records: _Optional[_Union[PredictRecords, _Mapping]] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("classes", "first_row", "predictions")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedScalarFieldContainer[str]
    first_row: int
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, classes: _Optional[_Iterable[str]] = ..., first_row: _Optional[int] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...
