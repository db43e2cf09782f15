"""Translation between stored rows and automl.v1 messages, both ways."""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any, TypeVar, cast, overload

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from sqlalchemy import Row

from automl.common.names import parse_optional as optional_name
from automl.v1 import common_pb2, dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2, storage_service_pb2
from services.storage import schema


def to_dict(message: Message) -> dict[str, Any]:
    """The proto3 JSON mapping of `message` (how nested documents are stored)."""
    return json_format.MessageToDict(message)


_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=dt.UTC)


@overload
def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp: ...
@overload
def _ts(value: None) -> None: ...
def _ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A stored time (naive UTC, or aware) as a Timestamp; None stays None.
    Arithmetic instead of Timestamp.FromDatetime: a third of the cost, same value."""
    if value is None:
        return None
    since = value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)
    return timestamp_pb2.Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


_M = TypeVar("_M", bound=Message)


def _parse(document: str | None, message: _M) -> _M:
    kind: type = type(message)  # plain `type`: mypy takes a type[Message] for unhashable (python/mypy#17730)
    if document and (data := _parsed(kind, document)):  # b"": nothing set, as ParseDict of {} sets nothing
        message.MergeFromString(data)
    return message


@functools.lru_cache(maxsize=4096)
def _parsed(cls: type[Message], document: str) -> bytes:
    """The binary form of a stored JSON document of message type `cls`. Cached:
    the documents that reads convert again and again (a run's stop conditions,
    an ensemble's members) are few and small, and json_format is slow."""
    message = cls()
    json_format.ParseDict(json.loads(document), message, ignore_unknown_fields=True)
    return message.SerializeToString()


def dataset(row: schema.Dataset, content: schema.Content | None = None) -> dataset_pb2.Dataset:
    location = dataset_pb2.Dataset.STORAGE_LOCATION_UNSPECIFIED
    if content is not None:
        location = (
            dataset_pb2.Dataset.STORAGE_LOCATION_BLOB
            if content.blob_key
            else dataset_pb2.Dataset.STORAGE_LOCATION_INLINE
        )
    message = dataset_pb2.Dataset(
        name=f"datasets/{row.id}",
        display_name=row.display_name,
        description=row.description,
        csv_options=_parse(row.csv_options, common_pb2.CsvOptions()),
        size_bytes=row.size_bytes,
        sha256=row.content_sha256,
        row_count=row.row_count,
        storage_location=location,
        create_time=_ts(row.create_time),
    )
    for column in json.loads(row.columns):
        json_format.ParseDict(column, message.columns.add())
    return message


def experiment(row: schema.Experiment, run_count: int) -> experiment_pb2.Experiment:
    return experiment_pb2.Experiment(
        name=f"experiments/{row.id}",
        display_name=row.display_name,
        description=row.description,
        dataset=f"datasets/{row.dataset_id}",
        target_column=row.target_column,
        task=cast(common_pb2.Task, row.task),  # the enums' numbers, as stored
        resolved_task=cast(common_pb2.Task, row.resolved_task),
        primary_metric=cast(common_pb2.Metric, row.primary_metric),
        cv_folds=row.cv_folds,
        holdout_fraction=row.holdout_fraction,
        seed=row.seed,
        allowed_model_families=json.loads(row.allowed_model_families),
        excluded_columns=json.loads(row.excluded_columns),
        default_stop_conditions=_parse(row.default_stop_conditions, common_pb2.StopConditions()),
        create_time=_ts(row.create_time),
        update_time=_ts(row.update_time),
        run_count=run_count,
    )


def run(row: Any, experiment_id: str, queue_position: int | None = None) -> run_pb2.Run:
    """A run row (an ORM schema.Run, or a Core row with its attribute names) as a
    message. `queue_position`: the QUEUED run's place (default: the row's)."""
    state = row.state
    message = run_pb2.Run(
        name=f"runs/{row.id}",
        experiment=f"experiments/{experiment_id}",
        state=state,
        stop_reason=row.stop_reason,
        status_message=row.status_message,
        parallel_workers=row.parallel_workers,
        primary_metric=row.primary_metric,
        create_time=_ts(row.create_time),
        start_time=_ts(row.start_time),
        end_time=_ts(row.end_time),
        models_evaluated=row.models_evaluated,
        models_failed=row.models_failed,
        models_stopped=row.models_stopped,
        notes=json.loads(row.notes) if row.notes else None,
        best_model_result=f"modelResults/{row.best_result_id}" if row.best_result_id else "",
        runner_id=row.runner_id,
        heartbeat_time=_ts(row.heartbeat_time),
        last_sequence=row.last_sequence,
        takeovers=row.takeovers or 0,
        claim_time=_ts(row.claim_time),
    )
    message.stop_conditions.SetInParent()  # present even when empty, as it always was
    _parse(row.stop_conditions, message.stop_conditions)
    if state == common_pb2.RUN_STATE_QUEUED:
        message.queue_position = getattr(row, "queue_position", 0) if queue_position is None else queue_position
    if row.best_score is not None:
        message.best_score = row.best_score
    if row.prior_search_seconds:
        message.prior_search_time.FromTimedelta(dt.timedelta(seconds=row.prior_search_seconds))
    return message


def model_result(row: Any, metric_rows: list[Any], full: bool) -> run_pb2.ModelResult:
    """A result row (ORM, or a Core row with its attribute names; model_json and
    folds only read when `full`) and its metric rows as a message."""
    message = run_pb2.ModelResult(
        name=f"modelResults/{row.id}",
        run=f"runs/{row.run_id}",
        index=row.position,
        job_id=row.job_id,
        model_family=row.model_family,
        pipeline_steps=json.loads(row.pipeline_steps),
        outcome=row.outcome,
        error_message=row.error_message,
        folds_run=row.folds_run,
        fit_time_seconds=row.fit_time_seconds,
        score_time_seconds=row.score_time_seconds,
        was_new_best=row.was_new_best,
        create_time=_ts(row.create_time),
        sample_rows=row.sample_rows or 0,
        job_type=row.job_type or "",
        predictions_artifact=f"artifacts/{row.predictions_artifact_id}" if row.predictions_artifact_id else "",
    )
    if row.primary_score is not None:
        message.primary_score = row.primary_score
    if row.ensemble_members:
        message.MergeFromString(_members(row.ensemble_members))
    for metric_row in metric_rows:
        summary = message.metrics.add(metric=metric_row.metric, mean=metric_row.mean, std=metric_row.std)
        if metric_row.train_mean is not None:
            summary.train_mean = metric_row.train_mean
    if full:
        message.model_json = row.model_json
        for fold in json.loads(row.folds):
            json_format.ParseDict(fold, message.folds.add())
    return message


@functools.lru_cache(maxsize=4096)
def _members(document: str) -> bytes:
    """A stored list of EnsembleMember as the binary form of a ModelResult holding only them."""
    holder = run_pb2.ModelResult()
    for member in json.loads(document):
        json_format.ParseDict(member, holder.ensemble_members.add(), ignore_unknown_fields=True)
    return holder.SerializeToString()


def result_fields(message: run_pb2.ModelResult) -> dict[str, Any]:
    """A ModelResult message as the repository's input."""
    return {
        "position": message.index,
        "job_id": message.job_id,
        "model_family": message.model_family,
        "pipeline_steps": list(message.pipeline_steps),
        "model_json": message.model_json,
        "outcome": message.outcome,
        "error_message": message.error_message,
        "folds": [to_dict(fold) for fold in message.folds],
        "metrics": [
            {
                "metric": m.metric,
                "mean": m.mean,
                "std": m.std,
                "train_mean": m.train_mean if m.HasField("train_mean") else None,
            }
            for m in message.metrics
        ],
        "primary_score": message.primary_score if message.HasField("primary_score") else None,
        "folds_run": message.folds_run,
        "fit_time_seconds": message.fit_time_seconds,
        "score_time_seconds": message.score_time_seconds,
        "sample_rows": message.sample_rows,
        "job_type": message.job_type,
        "ensemble_members": [to_dict(member) for member in message.ensemble_members],
        "predictions_artifact_id": optional_name(
            message.predictions_artifact, "artifacts", "model_results.predictions_artifact"
        ),
    }


def trained_model(
    row: schema.TrainedModel, experiment_id: str, artifact: schema.Content | None = None
) -> model_pb2.TrainedModel:
    message = model_pb2.TrainedModel(
        name=f"trainedModels/{row.id}",
        model_result=f"modelResults/{row.result_id}",
        run=f"runs/{row.run_id}",
        experiment=f"experiments/{experiment_id}",
        state=cast(model_pb2.TrainedModel.State, row.state),  # the enums' numbers, as stored
        error_message=row.error_message,
        task=cast(common_pb2.Task, row.task),
        classes=json.loads(row.classes),
        training_rows=row.training_rows,
        fit_time_seconds=row.fit_time_seconds,
        create_time=_ts(row.create_time),
        update_time=_ts(row.update_time),
        artifact=f"artifacts/{row.artifact_id}" if row.artifact_id else "",
        includes_holdout=bool(row.includes_holdout),
    )
    for column in json.loads(row.feature_columns):
        json_format.ParseDict(column, message.feature_columns.add())
    _parse(row.holdout_evaluation, message.holdout_evaluation)
    if artifact is not None:
        message.artifact_size_bytes = artifact.size_bytes
        message.artifact_sha256 = artifact.sha256
    return message


def artifact(row: schema.Artifact, content: schema.Content) -> storage_service_pb2.Artifact:
    return storage_service_pb2.Artifact(
        name=f"artifacts/{row.id}",
        kind=row.kind,
        size_bytes=content.size_bytes,
        sha256=content.sha256,
        storage_location=(
            dataset_pb2.Dataset.STORAGE_LOCATION_BLOB
            if content.blob_key
            else dataset_pb2.Dataset.STORAGE_LOCATION_INLINE
        ),
        create_time=_ts(row.create_time),
    )


def event(row: schema.Event) -> event_pb2.Event:
    message = event_pb2.Event.FromString(row.payload)
    message.sequence = row.sequence
    message.global_sequence = row.global_sequence
    return message


def subscription(row: schema.Subscription, experiment_name: str = "") -> storage_service_pb2.SubscriptionRecord:
    sub = event_pb2.Subscription(
        name=f"subscriptions/{row.id}",
        run=f"runs/{row.run_id}" if row.run_id else "",
        experiment=f"experiments/{row.experiment_id}" if row.experiment_id else experiment_name,
        event_types=json.loads(row.event_types),
        webhook_url=row.webhook_url,
        state=cast(event_pb2.Subscription.State, row.state),  # the enum's number, as stored
        create_time=_ts(row.create_time),
    )
    if row.webhook_status:
        _parse(row.webhook_status, sub.webhook_status)
    return storage_service_pb2.SubscriptionRecord(
        subscription=sub, token_sha256=row.token_sha256, webhook_secret=row.webhook_secret, tenant=row.tenant
    )


def api_key(row: schema.ApiKey | Row[Any]) -> storage_service_pb2.ApiKey:
    """An API key (an ORM schema.ApiKey, or a Core row with its attribute names) as a message."""
    return storage_service_pb2.ApiKey(
        name=f"apiKeys/{row.id}",
        tenant=row.tenant,
        display_name=row.display_name,
        prefix=row.prefix,
        create_time=_ts(row.create_time),
        revoke_time=_ts(row.revoke_time),
    )
