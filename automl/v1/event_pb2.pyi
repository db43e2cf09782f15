import datetime

from automl.v1 import common_pb2 as _common_pb2
from automl.v1 import model_pb2 as _model_pb2
from automl.v1 import run_pb2 as _run_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_RUN_STARTED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_EVALUATED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_FAILED: _ClassVar[EventType]
    EVENT_TYPE_RUN_STATE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_STOP_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_RUN_FINISHED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_TRAINED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_TESTED: _ClassVar[EventType]
    EVENT_TYPE_RUN_NOTE: _ClassVar[EventType]
    EVENT_TYPE_RUN_QUEUED: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_RUN_STARTED: EventType
EVENT_TYPE_MODEL_EVALUATED: EventType
EVENT_TYPE_MODEL_FAILED: EventType
EVENT_TYPE_RUN_STATE_CHANGED: EventType
EVENT_TYPE_STOP_REQUESTED: EventType
EVENT_TYPE_RUN_FINISHED: EventType
EVENT_TYPE_MODEL_TRAINED: EventType
EVENT_TYPE_MODEL_TESTED: EventType
EVENT_TYPE_RUN_NOTE: EventType
EVENT_TYPE_RUN_QUEUED: EventType

class Event(_message.Message):
    __slots__ = ("run", "experiment", "sequence", "global_sequence", "type", "create_time", "id", "run_started", "model_evaluated", "model_failed", "run_state_changed", "stop_requested", "run_finished", "model_trained", "model_tested", "run_note", "run_queued")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STARTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAILED_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RUN_FINISHED_FIELD_NUMBER: _ClassVar[int]
    MODEL_TRAINED_FIELD_NUMBER: _ClassVar[int]
    MODEL_TESTED_FIELD_NUMBER: _ClassVar[int]
    RUN_NOTE_FIELD_NUMBER: _ClassVar[int]
    RUN_QUEUED_FIELD_NUMBER: _ClassVar[int]
    run: str
    experiment: str
    sequence: int
    global_sequence: int
    type: EventType
    create_time: _timestamp_pb2.Timestamp
    id: str
    run_started: RunStarted
    model_evaluated: ModelEvaluated
    model_failed: ModelFailed
    run_state_changed: RunStateChanged
    stop_requested: StopRequested
    run_finished: RunFinished
    model_trained: ModelTrained
    model_tested: ModelTested
    run_note: RunNote
    run_queued: RunQueued
    def __init__(self, run: _Optional[str] = ..., experiment: _Optional[str] = ..., sequence: _Optional[int] = ..., global_sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., run_started: _Optional[_Union[RunStarted, _Mapping]] = ..., model_evaluated: _Optional[_Union[ModelEvaluated, _Mapping]] = ..., model_failed: _Optional[_Union[ModelFailed, _Mapping]] = ..., run_state_changed: _Optional[_Union[RunStateChanged, _Mapping]] = ..., stop_requested: _Optional[_Union[StopRequested, _Mapping]] = ..., run_finished: _Optional[_Union[RunFinished, _Mapping]] = ..., model_trained: _Optional[_Union[ModelTrained, _Mapping]] = ..., model_tested: _Optional[_Union[ModelTested, _Mapping]] = ..., run_note: _Optional[_Union[RunNote, _Mapping]] = ..., run_queued: _Optional[_Union[RunQueued, _Mapping]] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("runner_id", "stop_conditions", "parallel_workers", "primary_metric", "task", "search_rows", "split_artifact", "holdout_rows", "feature_columns")
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_WORKERS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_METRIC_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_ROWS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    stop_conditions: _common_pb2.StopConditions
    parallel_workers: int
    primary_metric: _common_pb2.Metric
    task: _common_pb2.Task
    search_rows: int
    split_artifact: str
    holdout_rows: int
    feature_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, runner_id: _Optional[str] = ..., stop_conditions: _Optional[_Union[_common_pb2.StopConditions, _Mapping]] = ..., parallel_workers: _Optional[int] = ..., primary_metric: _Optional[_Union[_common_pb2.Metric, str]] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., search_rows: _Optional[int] = ..., split_artifact: _Optional[str] = ..., holdout_rows: _Optional[int] = ..., feature_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelEvaluated(_message.Message):
    __slots__ = ("model_result", "index", "model_family", "primary_score", "metrics", "fit_time_seconds", "folds_run", "is_new_best", "best_score", "models_evaluated", "models_failed", "models_stopped")
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_SCORE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FOLDS_RUN_FIELD_NUMBER: _ClassVar[int]
    IS_NEW_BEST_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODELS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODELS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    model_result: str
    index: int
    model_family: str
    primary_score: float
    metrics: _containers.RepeatedCompositeFieldContainer[_common_pb2.MetricSummary]
    fit_time_seconds: float
    folds_run: int
    is_new_best: bool
    best_score: float
    models_evaluated: int
    models_failed: int
    models_stopped: int
    def __init__(self, model_result: _Optional[str] = ..., index: _Optional[int] = ..., model_family: _Optional[str] = ..., primary_score: _Optional[float] = ..., metrics: _Optional[_Iterable[_Union[_common_pb2.MetricSummary, _Mapping]]] = ..., fit_time_seconds: _Optional[float] = ..., folds_run: _Optional[int] = ..., is_new_best: _Optional[bool] = ..., best_score: _Optional[float] = ..., models_evaluated: _Optional[int] = ..., models_failed: _Optional[int] = ..., models_stopped: _Optional[int] = ...) -> None: ...

class ModelFailed(_message.Message):
    __slots__ = ("model_result", "index", "model_family", "outcome", "error_message", "models_failed", "models_stopped")
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODELS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    model_result: str
    index: int
    model_family: str
    outcome: _run_pb2.ModelResult.Outcome
    error_message: str
    models_failed: int
    models_stopped: int
    def __init__(self, model_result: _Optional[str] = ..., index: _Optional[int] = ..., model_family: _Optional[str] = ..., outcome: _Optional[_Union[_run_pb2.ModelResult.Outcome, str]] = ..., error_message: _Optional[str] = ..., models_failed: _Optional[int] = ..., models_stopped: _Optional[int] = ...) -> None: ...

class RunStateChanged(_message.Message):
    __slots__ = ("previous_state", "state", "stop_reason", "message")
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    previous_state: _common_pb2.RunState
    state: _common_pb2.RunState
    stop_reason: _common_pb2.StopReason
    message: str
    def __init__(self, previous_state: _Optional[_Union[_common_pb2.RunState, str]] = ..., state: _Optional[_Union[_common_pb2.RunState, str]] = ..., stop_reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class StopRequested(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: _common_pb2.StopReason
    message: str
    def __init__(self, reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class RunFinished(_message.Message):
    __slots__ = ("state", "stop_reason", "message", "models_evaluated", "models_failed", "best_model_result", "best_score", "duration", "models_stopped")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODELS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FAILED_FIELD_NUMBER: _ClassVar[int]
    BEST_MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MODELS_STOPPED_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.RunState
    stop_reason: _common_pb2.StopReason
    message: str
    models_evaluated: int
    models_failed: int
    best_model_result: str
    best_score: float
    duration: _duration_pb2.Duration
    models_stopped: int
    def __init__(self, state: _Optional[_Union[_common_pb2.RunState, str]] = ..., stop_reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., message: _Optional[str] = ..., models_evaluated: _Optional[int] = ..., models_failed: _Optional[int] = ..., best_model_result: _Optional[str] = ..., best_score: _Optional[float] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., models_stopped: _Optional[int] = ...) -> None: ...

class RunNote(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class RunQueued(_message.Message):
    __slots__ = ("position", "takeovers", "message")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TAKEOVERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    position: int
    takeovers: int
    message: str
    def __init__(self, position: _Optional[int] = ..., takeovers: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ModelTrained(_message.Message):
    __slots__ = ("trained_model", "model_result", "state", "fit_time_seconds", "error_message")
    TRAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    trained_model: str
    model_result: str
    state: _model_pb2.TrainedModel.State
    fit_time_seconds: float
    error_message: str
    def __init__(self, trained_model: _Optional[str] = ..., model_result: _Optional[str] = ..., state: _Optional[_Union[_model_pb2.TrainedModel.State, str]] = ..., fit_time_seconds: _Optional[float] = ..., error_message: _Optional[str] = ...) -> None: ...

class ModelTested(_message.Message):
    __slots__ = ("trained_model", "evaluation")
    TRAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    trained_model: str
    evaluation: _model_pb2.HoldoutEvaluation
    def __init__(self, trained_model: _Optional[str] = ..., evaluation: _Optional[_Union[_model_pb2.HoldoutEvaluation, _Mapping]] = ...) -> None: ...

class RunSnapshot(_message.Message):
    __slots__ = ("run", "elapsed", "budget_left", "best_model_result")
    RUN_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_FIELD_NUMBER: _ClassVar[int]
    BEST_MODEL_RESULT_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    elapsed: _duration_pb2.Duration
    budget_left: _duration_pb2.Duration
    best_model_result: _run_pb2.ModelResult
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., budget_left: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., best_model_result: _Optional[_Union[_run_pb2.ModelResult, _Mapping]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("snapshot", "batch", "heartbeat")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot: RunSnapshot
    batch: EventBatch
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, snapshot: _Optional[_Union[RunSnapshot, _Mapping]] = ..., batch: _Optional[_Union[EventBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("name", "run", "experiment", "event_types", "webhook_url", "state", "webhook_status", "create_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Subscription.State]
        STATE_ACTIVE: _ClassVar[Subscription.State]
        STATE_REVOKED: _ClassVar[Subscription.State]
    STATE_UNSPECIFIED: Subscription.State
    STATE_ACTIVE: Subscription.State
    STATE_REVOKED: Subscription.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    run: str
    experiment: str
    event_types: _containers.RepeatedScalarFieldContainer[EventType]
    webhook_url: str
    state: Subscription.State
    webhook_status: WebhookStatus
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., run: _Optional[str] = ..., experiment: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[EventType, str]]] = ..., webhook_url: _Optional[str] = ..., state: _Optional[_Union[Subscription.State, str]] = ..., webhook_status: _Optional[_Union[WebhookStatus, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookStatus(_message.Message):
    __slots__ = ("state", "last_delivered_global_sequence", "failed_attempts", "last_error", "last_attempt_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[WebhookStatus.State]
        STATE_HEALTHY: _ClassVar[WebhookStatus.State]
        STATE_RETRYING: _ClassVar[WebhookStatus.State]
        STATE_GAVE_UP: _ClassVar[WebhookStatus.State]
    STATE_UNSPECIFIED: WebhookStatus.State
    STATE_HEALTHY: WebhookStatus.State
    STATE_RETRYING: WebhookStatus.State
    STATE_GAVE_UP: WebhookStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_DELIVERED_GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    state: WebhookStatus.State
    last_delivered_global_sequence: int
    failed_attempts: int
    last_error: str
    last_attempt_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[WebhookStatus.State, str]] = ..., last_delivered_global_sequence: _Optional[int] = ..., failed_attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., last_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ...) -> None: ...

class CreateSubscriptionResponse(_message.Message):
    __slots__ = ("subscription", "token", "webhook_secret")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    token: str
    webhook_secret: str
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., token: _Optional[str] = ..., webhook_secret: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("token", "after_global_sequence")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    AFTER_GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    token: str
    after_global_sequence: int
    def __init__(self, token: _Optional[str] = ..., after_global_sequence: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("batch", "heartbeat")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    batch: EventBatch
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, batch: _Optional[_Union[EventBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...
