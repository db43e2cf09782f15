import datetime

from automl.v1 import common_pb2 as _common_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Experiment(_message.Message):
    __slots__ = ("name", "display_name", "description", "dataset", "target_column", "task", "resolved_task", "primary_metric", "cv_folds", "holdout_fraction", "seed", "allowed_model_families", "excluded_columns", "default_stop_conditions", "create_time", "update_time", "run_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_TASK_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_METRIC_FIELD_NUMBER: _ClassVar[int]
    CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODEL_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STOP_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    dataset: str
    target_column: str
    task: _common_pb2.Task
    resolved_task: _common_pb2.Task
    primary_metric: _common_pb2.Metric
    cv_folds: int
    holdout_fraction: float
    seed: int
    allowed_model_families: _containers.RepeatedScalarFieldContainer[str]
    excluded_columns: _containers.RepeatedScalarFieldContainer[str]
    default_stop_conditions: _common_pb2.StopConditions
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    run_count: int
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., dataset: _Optional[str] = ..., target_column: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., resolved_task: _Optional[_Union[_common_pb2.Task, str]] = ..., primary_metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., cv_folds: _Optional[int] = ..., holdout_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., allowed_model_families: _Optional[_Iterable[str]] = ..., excluded_columns: _Optional[_Iterable[str]] = ..., default_stop_conditions: _Optional[_Union[_common_pb2.StopConditions, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_count: _Optional[int] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("experiment", "experiment_id")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    experiment_id: str
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token", "total_size")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    next_page_token: str
    total_size: int
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class UpdateExperimentRequest(_message.Message):
    __slots__ = ("experiment", "update_mask")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
