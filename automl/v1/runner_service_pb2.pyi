import datetime

from automl.v1 import common_pb2 as _common_pb2
from automl.v1 import model_pb2 as _model_pb2
from automl.v1 import run_pb2 as _run_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecuteRunRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopExecutionRequest(_message.Message):
    __slots__ = ("name", "reason", "message", "grace_period")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: _common_pb2.StopReason
    message: str
    grace_period: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., message: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetRunnerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunnerStatus(_message.Message):
    __slots__ = ("runner_id", "version", "aikit_version", "max_workers", "busy_workers", "active_runs", "executor", "start_time")
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AIKIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_RUNS_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    runner_id: str
    version: str
    aikit_version: str
    max_workers: int
    busy_workers: int
    active_runs: _containers.RepeatedCompositeFieldContainer[ActiveRun]
    executor: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, runner_id: _Optional[str] = ..., version: _Optional[str] = ..., aikit_version: _Optional[str] = ..., max_workers: _Optional[int] = ..., busy_workers: _Optional[int] = ..., active_runs: _Optional[_Iterable[_Union[ActiveRun, _Mapping]]] = ..., executor: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActiveRun(_message.Message):
    __slots__ = ("run", "state", "workers", "models_evaluated")
    RUN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MODELS_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    run: str
    state: _common_pb2.RunState
    workers: int
    models_evaluated: int
    def __init__(self, run: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RunState, str]] = ..., workers: _Optional[int] = ..., models_evaluated: _Optional[int] = ...) -> None: ...

class ExecuteTrainingRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
