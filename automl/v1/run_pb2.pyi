import datetime

from automl.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelResultView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_RESULT_VIEW_UNSPECIFIED: _ClassVar[ModelResultView]
    MODEL_RESULT_VIEW_BASIC: _ClassVar[ModelResultView]
    MODEL_RESULT_VIEW_FULL: _ClassVar[ModelResultView]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_XLSX: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSON: _ClassVar[ExportFormat]
MODEL_RESULT_VIEW_UNSPECIFIED: ModelResultView
MODEL_RESULT_VIEW_BASIC: ModelResultView
MODEL_RESULT_VIEW_FULL: ModelResultView
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_XLSX: ExportFormat
EXPORT_FORMAT_JSON: ExportFormat

class Run(_message.Message):
    __slots__ = ("name", "experiment", "state", "stop_reason", "status_message", "stop_conditions", "parallel_workers", "primary_metric", "create_time", "start_time", "end_time", "models_evaluated", "models_failed", "best_model_result", "best_score", "runner_id", "heartbeat_time", "last_sequence", "models_stopped", "notes", "queue_position", "takeovers", "claim_time", "prior_search_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STOP_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_WORKERS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_METRIC_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MODELS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FAILED_FIELD_NUMBER: _ClassVar[int]
    BEST_MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MODELS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    TAKEOVERS_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TIME_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SEARCH_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    experiment: str
    state: _common_pb2.RunState
    stop_reason: _common_pb2.StopReason
    status_message: str
    stop_conditions: _common_pb2.StopConditions
    parallel_workers: int
    primary_metric: _common_pb2.Metric
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    models_evaluated: int
    models_failed: int
    best_model_result: str
    best_score: float
    runner_id: str
    heartbeat_time: _timestamp_pb2.Timestamp
    last_sequence: int
    models_stopped: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    queue_position: int
    takeovers: int
    claim_time: _timestamp_pb2.Timestamp
    prior_search_time: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., experiment: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RunState, str]] = ..., stop_reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., status_message: _Optional[str] = ..., stop_conditions: _Optional[_Union[_common_pb2.StopConditions, _Mapping]] = ..., parallel_workers: _Optional[int] = ..., primary_metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., models_evaluated: _Optional[int] = ..., models_failed: _Optional[int] = ..., best_model_result: _Optional[str] = ..., best_score: _Optional[float] = ..., runner_id: _Optional[str] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sequence: _Optional[int] = ..., models_stopped: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., queue_position: _Optional[int] = ..., takeovers: _Optional[int] = ..., claim_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prior_search_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("name", "run", "index", "job_id", "model_family", "pipeline_steps", "model_json", "outcome", "error_message", "folds", "metrics", "primary_score", "folds_run", "fit_time_seconds", "score_time_seconds", "was_new_best", "create_time", "sample_rows", "job_type", "ensemble_members", "predictions_artifact")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[ModelResult.Outcome]
        OUTCOME_SUCCEEDED: _ClassVar[ModelResult.Outcome]
        OUTCOME_FAILED: _ClassVar[ModelResult.Outcome]
        OUTCOME_TIMED_OUT: _ClassVar[ModelResult.Outcome]
        OUTCOME_OUT_OF_MEMORY: _ClassVar[ModelResult.Outcome]
        OUTCOME_INTERRUPTED: _ClassVar[ModelResult.Outcome]
    OUTCOME_UNSPECIFIED: ModelResult.Outcome
    OUTCOME_SUCCEEDED: ModelResult.Outcome
    OUTCOME_FAILED: ModelResult.Outcome
    OUTCOME_TIMED_OUT: ModelResult.Outcome
    OUTCOME_OUT_OF_MEMORY: ModelResult.Outcome
    OUTCOME_INTERRUPTED: ModelResult.Outcome
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_STEPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_SCORE_FIELD_NUMBER: _ClassVar[int]
    FOLDS_RUN_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAS_NEW_BEST_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    name: str
    run: str
    index: int
    job_id: str
    model_family: str
    pipeline_steps: _containers.RepeatedScalarFieldContainer[str]
    model_json: str
    outcome: ModelResult.Outcome
    error_message: str
    folds: _containers.RepeatedCompositeFieldContainer[FoldScores]
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.MetricSummary]
    primary_score: float
    folds_run: int
    fit_time_seconds: float
    score_time_seconds: float
    was_new_best: bool
    create_time: _timestamp_pb2.Timestamp
    sample_rows: int
    job_type: str
    ensemble_members: _containers.RepeatedCompositeFieldContainer[EnsembleMember]
    predictions_artifact: str
    def __init__(self, name: _Optional[str] = ..., run: _Optional[str] = ..., index: _Optional[int] = ..., job_id: _Optional[str] = ..., model_family: _Optional[str] = ..., pipeline_steps: _Optional[_Iterable[str]] = ..., model_json: _Optional[str] = ..., outcome: _Optional[_Union[ModelResult.Outcome, str]] = ..., error_message: _Optional[str] = ..., folds: _Optional[_Iterable[_Union[FoldScores, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.MetricSummary, _Mapping]]] = ..., primary_score: _Optional[float] = ..., folds_run: _Optional[int] = ..., fit_time_seconds: _Optional[float] = ..., score_time_seconds: _Optional[float] = ..., was_new_best: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sample_rows: _Optional[int] = ..., job_type: _Optional[str] = ..., ensemble_members: _Optional[_Iterable[_Union[EnsembleMember, _Mapping]]] = ..., predictions_artifact: _Optional[str] = ...) -> None: ...

class EnsembleMember(_message.Message):
    __slots__ = ("model_result", "index", "weight")
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    model_result: str
    index: int
    weight: float
    def __init__(self, model_result: _Optional[str] = ..., index: _Optional[int] = ..., weight: _Optional[float] = ...) -> None: ...

class FoldScores(_message.Message):
    __slots__ = ("fold_nb", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FOLD_NB_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    fold_nb: int
    values: _containers.ScalarMap[str, float]
    def __init__(self, fold_nb: _Optional[int] = ..., values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("experiment", "stop_conditions", "parallel_workers")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STOP_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_WORKERS_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    stop_conditions: _common_pb2.StopConditions
    parallel_workers: int
    def __init__(self, experiment: _Optional[str] = ..., stop_conditions: _Optional[_Union[_common_pb2.StopConditions, _Mapping]] = ..., parallel_workers: _Optional[int] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token", "total_size")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    total_size: int
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class StopRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("run", "metric", "page_size", "page_token")
    RUN_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run: str
    metric: _common_pb2.Metric
    page_size: int
    page_token: str
    def __init__(self, run: _Optional[str] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LeaderboardEntry(_message.Message):
    __slots__ = ("rank", "model_result")
    RANK_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    rank: int
    model_result: ModelResult
    def __init__(self, rank: _Optional[int] = ..., model_result: _Optional[_Union[ModelResult, _Mapping]] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "total_size", "metric", "higher_is_better")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LeaderboardEntry]
    next_page_token: str
    total_size: int
    metric: _common_pb2.Metric
    higher_is_better: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[LeaderboardEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., higher_is_better: _Optional[bool] = ...) -> None: ...

class GetModelResultRequest(_message.Message):
    __slots__ = ("name", "view")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    name: str
    view: ModelResultView
    def __init__(self, name: _Optional[str] = ..., view: _Optional[_Union[ModelResultView, str]] = ...) -> None: ...

class ListModelResultsRequest(_message.Message):
    __slots__ = ("run", "page_size", "page_token", "filter", "view")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    run: str
    page_size: int
    page_token: str
    filter: str
    view: ModelResultView
    def __init__(self, run: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., view: _Optional[_Union[ModelResultView, str]] = ...) -> None: ...

class ListModelResultsResponse(_message.Message):
    __slots__ = ("model_results", "next_page_token", "total_size")
    MODEL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    next_page_token: str
    total_size: int
    def __init__(self, model_results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ExportRunResultsRequest(_message.Message):
    __slots__ = ("run", "format")
    RUN_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    run: str
    format: ExportFormat
    def __init__(self, run: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ExportRunResultsResponse(_message.Message):
    __slots__ = ("content_type", "filename", "chunk")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    filename: str
    chunk: bytes
    def __init__(self, content_type: _Optional[str] = ..., filename: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...
