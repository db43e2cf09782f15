"""Checks of every public request at the door, before any backend is called.

Each request type has one rule that returns all of its field violations at
once (a user fixes a request in one round, not one error per try). The rules
check the contract's shape: required fields, resource names, ranges, enum
values, sizes. What needs data (does the target column exist, does the run
belong to the caller) is checked by the services that hold the data, which
also re-check their own inputs: the gateway is the first line, not the only.

A test walks the AutoML service descriptor and fails for a method whose
request type has no rule here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from automl.common import csvformat, names, stopping
from automl.common.errors import FieldViolation, InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2

Violations = list[FieldViolation]
Rule = Callable[[Any], Violations]

MAX_PAGE_SIZE = 1000
MAX_TEXT = 4096
MAX_CHUNK = 1024 * 1024
MAX_VIOLATIONS = 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
EXPERIMENT_MUTABLE = frozenset({"display_name", "description", "default_stop_conditions"})


def check(request: Message) -> None:
    """Raise InvalidArgument with the violations of `request` (none: return):
    all of them, up to MAX_VIOLATIONS, so that the error stays well under the
    16 KiB a gRPC client takes in trailers (past that, the client reports
    RESOURCE_EXHAUSTED instead of the error)."""
    violations = RULES[request.DESCRIPTOR.full_name](request)
    if not violations:
        return
    if len(violations) <= MAX_VIOLATIONS:
        raise InvalidArgument.of(violations)
    first, rest = violations[0], len(violations) - MAX_VIOLATIONS
    shown = [
        *violations[:MAX_VIOLATIONS],
        FieldViolation(violations[MAX_VIOLATIONS].field, f"and {rest} more violations not listed"),
    ]
    raise InvalidArgument(f"{first.field}: {first.description} (and {len(violations) - 1} more)", shown)


def has_rule(message_type: str) -> bool:
    return message_type in RULES


# ------------------------------------------------------------------ helpers


def name(value: str, collection: str, field: str = "name", required: bool = True) -> Violations:
    return names.violations(value, collection, field, required)


def paging(request: Any, field: str = "page_size") -> Violations:
    out = []
    if not 0 <= request.page_size <= MAX_PAGE_SIZE:
        out.append(FieldViolation(field, f"{request.page_size}: use 1 to {MAX_PAGE_SIZE} (0 for the default)"))
    if len(request.page_token) > 1024:
        out.append(FieldViolation("page_token", "not a token this server issued: use next_page_token as returned"))
    return out


def text(value: str, field: str, maximum: int, required: bool = False) -> Violations:
    if required and not value.strip():
        return [FieldViolation(field, f"required: 1 to {maximum} characters")]
    if len(value) > maximum:
        return [FieldViolation(field, f"{len(value)} characters: at most {maximum}")]
    return []


def enum(value: int, enum_type: Any, field: str, required: bool = False) -> Violations:
    if value not in enum_type.values():
        return [FieldViolation(field, f"{value} is not a value of {enum_type.DESCRIPTOR.name}")]
    if required and value == 0:
        choices = ", ".join(v.name for v in enum_type.DESCRIPTOR.values if v.number)
        return [FieldViolation(field, f"required: one of {choices}")]
    return []


def filter_text(request: Any) -> Violations:
    if len(request.filter) > 1024:
        return [FieldViolation("filter", f"{len(request.filter)} characters: at most 1024")]
    return []


def csv_options(options: c.CsvOptions, field: str) -> Violations:
    return csvformat.violations(csvformat.CsvFormat.of(options), field)


def stop_conditions(conditions: c.StopConditions, field: str) -> Violations:
    return stopping.check(conditions, field)


def _experiment(e: experiment_pb2.Experiment, field: str) -> Violations:
    out = text(e.display_name, f"{field}.display_name", 256, required=True)
    out += text(e.description, f"{field}.description", MAX_TEXT)
    out += name(e.dataset, "datasets", f"{field}.dataset")
    out += text(e.target_column, f"{field}.target_column", 1024, required=True)
    out += enum(e.task, c.Task, f"{field}.task")
    out += enum(e.primary_metric, c.Metric, f"{field}.primary_metric")
    if e.cv_folds and not 2 <= e.cv_folds <= 20:
        out.append(FieldViolation(f"{field}.cv_folds", f"{e.cv_folds}: use 2 to 20 (0 for 5)"))
    if not 0 <= e.holdout_fraction <= 0.5 or math.isnan(e.holdout_fraction):
        out.append(FieldViolation(f"{field}.holdout_fraction", f"{e.holdout_fraction}: use 0 to 0.5 (0 for 0.2)"))
    if len(e.allowed_model_families) > 100:
        out.append(FieldViolation(f"{field}.allowed_model_families", "at most 100 families"))
    if len(e.excluded_columns) > 10_000:
        out.append(FieldViolation(f"{field}.excluded_columns", "at most 10000 columns"))
    out += stop_conditions(e.default_stop_conditions, f"{field}.default_stop_conditions")
    return out


# ------------------------------------------------------------------- rules


def _upload(r: dataset_pb2.UploadDatasetRequest) -> Violations:
    if r.WhichOneof("content") != "header":
        return [FieldViolation("header", "the first message must be the header (display_name, csv_options)")]
    h = r.header
    out = text(h.display_name, "header.display_name", 256, required=True)
    out += text(h.description, "header.description", MAX_TEXT)
    out += csv_options(h.csv_options, "header.csv_options")
    if h.expected_sha256 and not SHA256.match(h.expected_sha256):
        out.append(FieldViolation("header.expected_sha256", "64 lowercase hex characters, or empty"))
    return out


def _create_experiment(r: experiment_pb2.CreateExperimentRequest) -> Violations:
    if not r.HasField("experiment"):
        return [FieldViolation("experiment", "required: the experiment to create")]
    out = _experiment(r.experiment, "experiment")
    if r.experiment_id:
        out += names.client_id_violations(r.experiment_id, "experiment_id")
    return out


def _update_experiment(r: experiment_pb2.UpdateExperimentRequest) -> Violations:
    out = name(r.experiment.name, "experiments", "experiment.name")
    paths = list(r.update_mask.paths)
    mutable = ", ".join(sorted(EXPERIMENT_MUTABLE))
    if not paths:
        out.append(FieldViolation("update_mask", f"required: the fields to change ({mutable})"))
    for path in paths:
        if path.split(".")[0] not in EXPERIMENT_MUTABLE:
            out.append(FieldViolation("update_mask", f"{path[:80]!r} cannot be changed; mutable: {mutable}"))
    if "display_name" in paths:
        out += text(r.experiment.display_name, "experiment.display_name", 256, required=True)
    if "description" in paths:
        out += text(r.experiment.description, "experiment.description", MAX_TEXT)
    out += stop_conditions(r.experiment.default_stop_conditions, "experiment.default_stop_conditions")
    return out


def _start_run(r: run_pb2.StartRunRequest) -> Violations:
    out = name(r.experiment, "experiments", "experiment")
    out += stop_conditions(r.stop_conditions, "stop_conditions")
    if not 0 <= r.parallel_workers <= 64:
        out.append(FieldViolation("parallel_workers", f"{r.parallel_workers}: use 1 to 64 (0: the runner's cores)"))
    return out


def _model_view(view: int, field: str = "view") -> Violations:
    return enum(view, run_pb2.ModelResultView, field)


def _predict(r: model_pb2.PredictRequest) -> Violations:
    out = name(r.name, "trainedModels")
    kind = r.WhichOneof("input")
    if kind is None:
        out.append(FieldViolation("input", "required: csv (bytes with a header row) or records"))
    elif kind == "records" and not r.records.rows:
        out.append(FieldViolation("records.rows", "required: at least one row"))
    elif kind == "csv" and not r.csv.strip():
        out.append(FieldViolation("csv", "required: a header row and at least one row"))
    return out + csv_options(r.csv_options, "csv_options")


def _predict_stream(r: model_pb2.PredictStreamRequest) -> Violations:
    if r.WhichOneof("content") != "header":
        return [FieldViolation("header", "the first message must be the header (the model's name)")]
    return name(r.header.name, "trainedModels", "header.name") + csv_options(r.header.csv_options, "header.csv_options")


def _create_subscription(r: event_pb2.CreateSubscriptionRequest) -> Violations:
    s = r.subscription
    out = name(s.run, "runs", "subscription.run", required=False)
    out += name(s.experiment, "experiments", "subscription.experiment", required=False)
    if s.run and s.experiment:
        out.append(FieldViolation("subscription.experiment", "set run or experiment, not both"))
    for i, t in enumerate(s.event_types):
        out += enum(t, event_pb2.EventType, f"subscription.event_types[{i}]", required=True)
    if s.webhook_url and not re.match(r"^https?://[^\s/]+", s.webhook_url):
        out.append(FieldViolation("subscription.webhook_url", "must be an http:// or https:// URL"))
    if len(s.webhook_url) > 2048:
        out.append(FieldViolation("subscription.webhook_url", "at most 2048 characters"))
    return out


def _subscribe(r: event_pb2.SubscribeRequest) -> Violations:
    out = text(r.token, "token", 512, required=True)
    if r.HasField("after_global_sequence") and r.after_global_sequence < 0:
        out.append(FieldViolation("after_global_sequence", "must be 0 or more"))
    return out


def _watch(r: event_pb2.WatchRunRequest) -> Violations:
    out = name(r.name, "runs")
    if r.HasField("after_sequence") and r.after_sequence < 0:
        out.append(FieldViolation("after_sequence", "must be 0 (the whole history) or more"))
    return out


def _export(r: run_pb2.ExportRunResultsRequest) -> Violations:
    return name(r.run, "runs", "run") + enum(r.format, run_pb2.ExportFormat, "format", required=True)


def _leaderboard(r: run_pb2.GetLeaderboardRequest) -> Violations:
    return name(r.run, "runs", "run") + enum(r.metric, c.Metric, "metric") + paging(r)


def _preview(r: dataset_pb2.PreviewDatasetRequest) -> Violations:
    out = name(r.name, "datasets")
    if not 0 <= r.row_count <= 1000:
        out.append(FieldViolation("row_count", f"{r.row_count}: use 1 to 1000 (0 for 20)"))
    return out


def _named(collection: str) -> Rule:
    return lambda r: name(r.name, collection)


RULES: dict[str, Rule] = {
    "automl.v1.UploadDatasetRequest": _upload,
    "automl.v1.GetDatasetRequest": _named("datasets"),
    "automl.v1.ListDatasetsRequest": lambda r: paging(r) + filter_text(r),
    "automl.v1.DeleteDatasetRequest": _named("datasets"),
    "automl.v1.PreviewDatasetRequest": _preview,
    "automl.v1.DownloadDatasetRequest": _named("datasets"),
    "automl.v1.CreateExperimentRequest": _create_experiment,
    "automl.v1.GetExperimentRequest": _named("experiments"),
    "automl.v1.ListExperimentsRequest": lambda r: paging(r) + filter_text(r),
    "automl.v1.UpdateExperimentRequest": _update_experiment,
    "automl.v1.DeleteExperimentRequest": _named("experiments"),
    "automl.v1.StartRunRequest": _start_run,
    "automl.v1.GetRunRequest": _named("runs"),
    "automl.v1.ListRunsRequest": lambda r: paging(r) + filter_text(r),
    "automl.v1.StopRunRequest": _named("runs"),
    "automl.v1.WatchRunRequest": _watch,
    "automl.v1.GetLeaderboardRequest": _leaderboard,
    "automl.v1.ListModelResultsRequest": lambda r: (
        name(r.run, "runs", "run") + paging(r) + filter_text(r) + _model_view(r.view)
    ),
    "automl.v1.GetModelResultRequest": lambda r: name(r.name, "modelResults") + _model_view(r.view),
    "automl.v1.ExportRunResultsRequest": _export,
    "automl.v1.TrainModelRequest": lambda r: name(r.model_result, "modelResults", "model_result"),
    "automl.v1.GetTrainedModelRequest": _named("trainedModels"),
    "automl.v1.ListTrainedModelsRequest": lambda r: paging(r) + filter_text(r),
    "automl.v1.TestModelRequest": _named("trainedModels"),
    "automl.v1.PredictRequest": _predict,
    "automl.v1.PredictStreamRequest": _predict_stream,
    "automl.v1.CreateSubscriptionRequest": _create_subscription,
    "automl.v1.GetSubscriptionRequest": _named("subscriptions"),
    "automl.v1.ListSubscriptionsRequest": paging,
    "automl.v1.DeleteSubscriptionRequest": _named("subscriptions"),
    "automl.v1.SubscribeRequest": _subscribe,
}
