import datetime

from automl.v1 import common_pb2 as _common_pb2
from automl.v1 import dataset_pb2 as _dataset_pb2
from automl.v1 import event_pb2 as _event_pb2
from automl.v1 import experiment_pb2 as _experiment_pb2
from automl.v1 import model_pb2 as _model_pb2
from automl.v1 import run_pb2 as _run_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRunRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class UpdateRunStateRequest(_message.Message):
    __slots__ = ("name", "expected_states", "state", "stop_reason", "status_message", "runner_id", "add_notes", "takeover")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_NOTES_FIELD_NUMBER: _ClassVar[int]
    TAKEOVER_FIELD_NUMBER: _ClassVar[int]
    name: str
    expected_states: _containers.RepeatedScalarFieldContainer[_common_pb2.RunState]
    state: _common_pb2.RunState
    stop_reason: _common_pb2.StopReason
    status_message: str
    runner_id: str
    add_notes: _containers.RepeatedScalarFieldContainer[str]
    takeover: bool
    def __init__(self, name: _Optional[str] = ..., expected_states: _Optional[_Iterable[_Union[_common_pb2.RunState, str]]] = ..., state: _Optional[_Union[_common_pb2.RunState, str]] = ..., stop_reason: _Optional[_Union[_common_pb2.StopReason, str]] = ..., status_message: _Optional[str] = ..., runner_id: _Optional[str] = ..., add_notes: _Optional[_Iterable[str]] = ..., takeover: _Optional[bool] = ...) -> None: ...

class HeartbeatRunRequest(_message.Message):
    __slots__ = ("name", "runner_id", "add_notes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNNER_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_NOTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    runner_id: str
    add_notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., runner_id: _Optional[str] = ..., add_notes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRunRecordsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class RunRecord(_message.Message):
    __slots__ = ("run", "tenant", "models_since_best")
    RUN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODELS_SINCE_BEST_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    tenant: str
    models_since_best: int
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., tenant: _Optional[str] = ..., models_since_best: _Optional[int] = ...) -> None: ...

class ListRunRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[RunRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FailLostTrainingsRequest(_message.Message):
    __slots__ = ("silent_since", "error_message")
    SILENT_SINCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    silent_since: _timestamp_pb2.Timestamp
    error_message: str
    def __init__(self, silent_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_message: _Optional[str] = ...) -> None: ...

class FailLostTrainingsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[TrainedModelRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[TrainedModelRecord, _Mapping]]] = ...) -> None: ...

class TrainedModelRecord(_message.Message):
    __slots__ = ("trained_model", "tenant")
    TRAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    trained_model: _model_pb2.TrainedModel
    tenant: str
    def __init__(self, trained_model: _Optional[_Union[_model_pb2.TrainedModel, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class BatchCreateModelResultsRequest(_message.Message):
    __slots__ = ("run", "model_results")
    RUN_FIELD_NUMBER: _ClassVar[int]
    MODEL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    run: str
    model_results: _containers.RepeatedCompositeFieldContainer[_run_pb2.ModelResult]
    def __init__(self, run: _Optional[str] = ..., model_results: _Optional[_Iterable[_Union[_run_pb2.ModelResult, _Mapping]]] = ...) -> None: ...

class BatchCreateModelResultsResponse(_message.Message):
    __slots__ = ("model_results", "run")
    MODEL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    model_results: _containers.RepeatedCompositeFieldContainer[_run_pb2.ModelResult]
    run: _run_pb2.Run
    def __init__(self, model_results: _Optional[_Iterable[_Union[_run_pb2.ModelResult, _Mapping]]] = ..., run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class CreateTrainedModelRequest(_message.Message):
    __slots__ = ("trained_model",)
    TRAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    trained_model: _model_pb2.TrainedModel
    def __init__(self, trained_model: _Optional[_Union[_model_pb2.TrainedModel, _Mapping]] = ...) -> None: ...

class UpdateTrainedModelRequest(_message.Message):
    __slots__ = ("trained_model", "update_mask")
    TRAINED_MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    trained_model: _model_pb2.TrainedModel
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, trained_model: _Optional[_Union[_model_pb2.TrainedModel, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "kind", "size_bytes", "sha256", "storage_location", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STORAGE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    size_bytes: int
    sha256: str
    storage_location: _dataset_pb2.Dataset.StorageLocation
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., storage_location: _Optional[_Union[_dataset_pb2.Dataset.StorageLocation, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WriteArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: WriteArtifactHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[WriteArtifactHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class WriteArtifactHeader(_message.Message):
    __slots__ = ("kind", "expected_sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: str
    expected_sha256: str
    def __init__(self, kind: _Optional[str] = ..., expected_sha256: _Optional[str] = ...) -> None: ...

class ReadArtifactRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReadArtifactResponse(_message.Message):
    __slots__ = ("artifact", "chunk")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    chunk: bytes
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class DeleteArtifactRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("events", "already_stored")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_STORED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    already_stored: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., already_stored: _Optional[_Iterable[bool]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("run", "experiment", "after_global_sequence", "after_sequence", "event_types", "page_size")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    AFTER_GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    run: str
    experiment: str
    after_global_sequence: int
    after_sequence: int
    event_types: _containers.RepeatedScalarFieldContainer[_event_pb2.EventType]
    page_size: int
    def __init__(self, run: _Optional[str] = ..., experiment: _Optional[str] = ..., after_global_sequence: _Optional[int] = ..., after_sequence: _Optional[int] = ..., event_types: _Optional[_Iterable[_Union[_event_pb2.EventType, str]]] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "has_more", "first_kept_global_sequence")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    FIRST_KEPT_GLOBAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    has_more: bool
    first_kept_global_sequence: int
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., has_more: _Optional[bool] = ..., first_kept_global_sequence: _Optional[int] = ...) -> None: ...

class SubscriptionRecord(_message.Message):
    __slots__ = ("subscription", "token_sha256", "webhook_secret", "tenant")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHA256_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_SECRET_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    subscription: _event_pb2.Subscription
    token_sha256: str
    webhook_secret: str
    tenant: str
    def __init__(self, subscription: _Optional[_Union[_event_pb2.Subscription, _Mapping]] = ..., token_sha256: _Optional[str] = ..., webhook_secret: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class CreateSubscriptionRecordRequest(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: SubscriptionRecord
    def __init__(self, record: _Optional[_Union[SubscriptionRecord, _Mapping]] = ...) -> None: ...

class GetSubscriptionRecordRequest(_message.Message):
    __slots__ = ("name", "token_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    token_sha256: str
    def __init__(self, name: _Optional[str] = ..., token_sha256: _Optional[str] = ...) -> None: ...

class ListSubscriptionRecordsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "active_webhooks_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WEBHOOKS_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    active_webhooks_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., active_webhooks_only: _Optional[bool] = ...) -> None: ...

class ListSubscriptionRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[SubscriptionRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[SubscriptionRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionRecordRequest(_message.Message):
    __slots__ = ("record", "update_mask")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    record: SubscriptionRecord
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, record: _Optional[_Union[SubscriptionRecord, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("name", "tenant", "display_name", "prefix", "create_time", "revoke_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    display_name: str
    prefix: str
    create_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., display_name: _Optional[str] = ..., prefix: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("api_key", "key_sha256")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    api_key: ApiKey
    key_sha256: str
    def __init__(self, api_key: _Optional[_Union[ApiKey, _Mapping]] = ..., key_sha256: _Optional[str] = ...) -> None: ...

class LookupApiKeyRequest(_message.Message):
    __slots__ = ("key_sha256",)
    KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    key_sha256: str
    def __init__(self, key_sha256: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("api_keys", "next_page_token")
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    next_page_token: str
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
