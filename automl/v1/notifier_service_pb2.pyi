from automl.v1 import common_pb2 as _common_pb2
from automl.v1 import event_pb2 as _event_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PublishRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("run", "experiment", "event_types", "after_sequence", "after_global_sequence", "end_with_run")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AFTER_GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    END_WITH_RUN_FIELD_NUMBER: _ClassVar[int]
    run: str
    experiment: str
    event_types: _containers.RepeatedScalarFieldContainer[_event_pb2.EventType]
    after_sequence: int
    after_global_sequence: int
    end_with_run: bool
    def __init__(self, run: _Optional[str] = ..., experiment: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[_event_pb2.EventType, str]]] = ..., after_sequence: _Optional[int] = ..., after_global_sequence: _Optional[int] = ..., end_with_run: _Optional[bool] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("batch", "heartbeat")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    batch: _event_pb2.EventBatch
    heartbeat: _common_pb2.Heartbeat
    def __init__(self, batch: _Optional[_Union[_event_pb2.EventBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[_common_pb2.Heartbeat, _Mapping]] = ...) -> None: ...
