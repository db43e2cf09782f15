"""A typed Python client of the public API (automl.v1.AutoML), over the
generated gRPC stubs.

    from automl_client import Client

    with Client() as api:                       # AUTOML_TARGET, AUTOML_API_KEY, ...
        dataset = api.upload_dataset("glass.csv")
        experiment = api.create_experiment(dataset.name, target="Type")
        run = api.start_run(experiment.name, max_time=300, max_models=100)
        for event in api.watch_events(run.name):
            ...
        board = api.leaderboard(run.name)

Calls that are safe to repeat are retried on UNAVAILABLE with exponential
backoff (gRPC's own retry policy); a watch that loses its connection resumes
from the last event it delivered, so an iteration never misses or repeats an
event. Errors are grpc.RpcError, as the server sent them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from automl.common.runs import TERMINAL_STATES
from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)

CHUNK = 1024 * 1024
PAGE = 1000
SERVICE = "automl.v1.AutoML"
# Calls that change nothing, or change it the same way when repeated: retried
# on UNAVAILABLE. Creating calls (StartRun, TrainModel, ...) are not: a retry
# could create twice.
IDEMPOTENT = (
    "GetDataset",
    "ListDatasets",
    "PreviewDataset",
    "DownloadDataset",
    "DeleteDataset",
    "GetExperiment",
    "ListExperiments",
    "UpdateExperiment",
    "DeleteExperiment",
    "GetRun",
    "ListRuns",
    "StopRun",
    "GetLeaderboard",
    "ListModelResults",
    "GetModelResult",
    "ExportRunResults",
    "GetTrainedModel",
    "ListTrainedModels",
    "TestModel",
    "Predict",
    "GetSubscription",
    "ListSubscriptions",
    "DeleteSubscription",
)
T = TypeVar("T")


class _PageRequest(Protocol):
    """A List* request: pages of page_size, from page_token on."""

    page_size: int
    page_token: str


class _Page(Protocol):
    """A List* answer: empty next_page_token on the last page."""

    @property
    def next_page_token(self) -> str: ...


Request = TypeVar("Request")
PageRequest = TypeVar("PageRequest", bound=_PageRequest)
Response = TypeVar("Response")
Page = TypeVar("Page", bound=_Page)


def resource(value: str, collection: str) -> str:
    """ "abc" or "runs/abc" -> "runs/abc" (ids are accepted bare)."""
    return value if value.startswith(f"{collection}/") else f"{collection}/{value}"


def duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the gateway; every field has an environment variable."""

    target: str = "localhost:50051"
    """AUTOML_TARGET: host:port of the gateway's gRPC port."""
    api_key: str = ""
    """AUTOML_API_KEY: the key, sent as "authorization: Bearer <key>"; empty: none."""
    tls: bool = False
    """AUTOML_TLS=1: TLS with the system's root certificates."""
    ca_file: str = ""
    """AUTOML_TLS_CA_FILE: TLS trusting this PEM file (implies tls)."""
    timeout: float = 60.0
    """AUTOML_TIMEOUT: deadline of each unary call, in seconds."""
    retries: int = 5
    """AUTOML_RETRIES: attempts of a call that may be repeated, when the gateway is unavailable."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Connection:
        env = os.environ
        values: dict[str, Any] = {
            "target": env.get("AUTOML_TARGET") or cls.target,
            "api_key": env.get("AUTOML_API_KEY", ""),
            "tls": env.get("AUTOML_TLS", "").lower() in ("1", "true", "yes"),
            "ca_file": env.get("AUTOML_TLS_CA_FILE", ""),
            "timeout": float(env.get("AUTOML_TIMEOUT") or cls.timeout),
            "retries": int(env.get("AUTOML_RETRIES") or cls.retries),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def channel(self) -> grpc.Channel:
        service_config = {
            "methodConfig": [
                {
                    "name": [{"service": SERVICE, "method": m} for m in IDEMPOTENT],
                    "retryPolicy": {
                        "maxAttempts": max(2, min(self.retries, 5)),
                        "initialBackoff": "0.2s",
                        "maxBackoff": "5s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
        options = [
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        if self.tls or self.ca_file:
            roots = Path(self.ca_file).read_bytes() if self.ca_file else None
            return grpc.secure_channel(self.target, grpc.ssl_channel_credentials(roots), options=options)
        return grpc.insecure_channel(self.target, options=options)


class Client:
    """The public API. Use as a context manager, or call close()."""

    def __init__(self, connection: Connection | None = None, **overrides: Any) -> None:
        self.connection = connection or Connection.from_env(**overrides)
        self._channel = self.connection.channel()
        self.stub = automl_service_pb2_grpc.AutoMLStub(self._channel)
        key = self.connection.api_key
        self.metadata: list[tuple[str, str]] = [("authorization", f"Bearer {key}")] if key else []

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple(self.metadata)

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Request, Response],
        request: Request,
        timeout: float | None = None,
    ) -> Response:
        return method(
            request, metadata=self._metadata(), timeout=timeout or self.connection.timeout, wait_for_ready=False
        )

    def _pages(
        self,
        method: grpc.UnaryUnaryMultiCallable[PageRequest, Page],
        request: PageRequest,
        items: Callable[[Page], Iterable[T]],
    ) -> Iterator[T]:
        request.page_size = request.page_size or PAGE
        while True:
            page = self._call(method, request)
            yield from items(page)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # ------------------------------------------------------------ datasets

    def upload_dataset(
        self,
        path: str | Path,
        display_name: str = "",
        description: str = "",
        csv_options: common_pb2.CsvOptions | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dataset_pb2.Dataset:
        """Stream a CSV file in 1 MiB chunks; `progress(bytes)` after each one."""
        path = Path(path)
        header = dataset_pb2.UploadDatasetHeader(
            display_name=display_name or path.name, description=description, csv_options=csv_options
        )

        def messages() -> Iterator[dataset_pb2.UploadDatasetRequest]:
            yield dataset_pb2.UploadDatasetRequest(header=header)
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield dataset_pb2.UploadDatasetRequest(chunk=chunk)
                    if progress:
                        progress(len(chunk))

        return self.stub.UploadDataset(messages(), metadata=self._metadata(), timeout=3600)

    def get_dataset(self, name: str) -> dataset_pb2.Dataset:
        return self._call(self.stub.GetDataset, dataset_pb2.GetDatasetRequest(name=resource(name, "datasets")))

    def list_datasets(self, filter: str = "") -> Iterator[dataset_pb2.Dataset]:
        return self._pages(
            self.stub.ListDatasets, dataset_pb2.ListDatasetsRequest(filter=filter), lambda page: page.datasets
        )

    def preview_dataset(self, name: str, rows: int = 20) -> dataset_pb2.PreviewDatasetResponse:
        request = dataset_pb2.PreviewDatasetRequest(name=resource(name, "datasets"), row_count=rows)
        return self._call(self.stub.PreviewDataset, request)

    def delete_dataset(self, name: str, force: bool = False) -> None:
        self._call(
            self.stub.DeleteDataset, dataset_pb2.DeleteDatasetRequest(name=resource(name, "datasets"), force=force)
        )

    def download_dataset(self, name: str, path: str | Path) -> int:
        request = dataset_pb2.DownloadDatasetRequest(name=resource(name, "datasets"))
        return _save(self.stub.DownloadDataset(request, metadata=self._metadata(), timeout=3600), Path(path))

    # --------------------------------------------------------- experiments

    def create_experiment(
        self,
        dataset: str,
        target: str,
        display_name: str = "",
        experiment_id: str = "",
        **fields: Any,
    ) -> experiment_pb2.Experiment:
        """`fields`: any other Experiment field (task, primary_metric, cv_folds,
        holdout_fraction, seed, allowed_model_families, excluded_columns, ...)."""
        experiment = experiment_pb2.Experiment(
            display_name=display_name or f"{target} from {dataset}",
            dataset=resource(dataset, "datasets"),
            target_column=target,
            **fields,
        )
        request = experiment_pb2.CreateExperimentRequest(experiment=experiment, experiment_id=experiment_id)
        return self._call(self.stub.CreateExperiment, request)

    def get_experiment(self, name: str) -> experiment_pb2.Experiment:
        return self._call(
            self.stub.GetExperiment, experiment_pb2.GetExperimentRequest(name=resource(name, "experiments"))
        )

    def list_experiments(self, filter: str = "") -> Iterator[experiment_pb2.Experiment]:
        return self._pages(
            self.stub.ListExperiments,
            experiment_pb2.ListExperimentsRequest(filter=filter),
            lambda page: page.experiments,
        )

    def update_experiment(self, name: str, **fields: Any) -> experiment_pb2.Experiment:
        """Change display_name, description or default_stop_conditions."""
        experiment = experiment_pb2.Experiment(name=resource(name, "experiments"), **fields)
        request = experiment_pb2.UpdateExperimentRequest(
            experiment=experiment, update_mask=field_mask_pb2.FieldMask(paths=sorted(fields))
        )
        return self._call(self.stub.UpdateExperiment, request)

    def delete_experiment(self, name: str) -> None:
        self._call(
            self.stub.DeleteExperiment, experiment_pb2.DeleteExperimentRequest(name=resource(name, "experiments"))
        )

    # ---------------------------------------------------------------- runs

    def start_run(
        self,
        experiment: str,
        max_time: float | None = None,
        target_score: float | None = None,
        max_models: int = 0,
        no_improvement: int = 0,
        model_time_limit: float | None = None,
        workers: int = 0,
    ) -> run_pb2.Run:
        """Start a search; times in seconds. With no condition at all, the
        experiment's default stop conditions apply."""
        request = run_pb2.StartRunRequest(experiment=resource(experiment, "experiments"), parallel_workers=workers)
        conditions = common_pb2.StopConditions(max_models=max_models, no_improvement_models=no_improvement)
        if max_time:
            conditions.max_duration.CopyFrom(duration(max_time))
        if target_score is not None:
            conditions.target_score = target_score
        if model_time_limit:
            conditions.per_model_time_limit.CopyFrom(duration(model_time_limit))
        if conditions.ByteSize():
            request.stop_conditions.CopyFrom(conditions)
        return self._call(self.stub.StartRun, request, timeout=max(self.connection.timeout, 120))

    def get_run(self, name: str) -> run_pb2.Run:
        return self._call(self.stub.GetRun, run_pb2.GetRunRequest(name=resource(name, "runs")))

    def list_runs(self, experiment: str = "", state: str = "") -> Iterator[run_pb2.Run]:
        terms = []
        if experiment:
            terms.append(f'experiment="{resource(experiment, "experiments")}"')
        if state:
            terms.append(f"state={state}")
        return self._pages(
            self.stub.ListRuns, run_pb2.ListRunsRequest(filter=" AND ".join(terms)), lambda page: page.runs
        )

    def stop_run(self, name: str) -> run_pb2.Run:
        return self._call(self.stub.StopRun, run_pb2.StopRunRequest(name=resource(name, "runs")))

    def watch(self, name: str, after_sequence: int | None = None) -> Iterator[event_pb2.WatchRunResponse]:
        """WatchRun messages until the run ends: a snapshot first (again after
        each reconnection), then event batches and heartbeats. A lost
        connection is resumed from the last event delivered, with backoff."""
        name = resource(name, "runs")
        last = after_sequence
        attempts, delay = 0, 0.2
        while True:
            request = event_pb2.WatchRunRequest(name=name)
            if last is not None:
                request.after_sequence = last
            try:
                for message in self.stub.WatchRun(request, metadata=self._metadata()):
                    attempts, delay = 0, 0.2
                    if message.WhichOneof("content") == "batch" and message.batch.events:
                        last = message.batch.events[-1].sequence
                    yield message
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempts >= 60:
                    raise
                if last is None:  # resume exactly where the snapshot stood
                    last = 0
                attempts += 1
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def watch_events(self, name: str, after_sequence: int | None = 0) -> Iterator[event_pb2.Event]:
        """Every event of a run, in order, until it ends (from the first by default)."""
        for message in self.watch(name, after_sequence):
            if message.WhichOneof("content") == "batch":
                yield from message.batch.events

    def wait_run(self, name: str, poll: float = 1.0, timeout: float | None = None) -> run_pb2.Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (run := self.get_run(name)).state not in TERMINAL_STATES:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{run.name} still {common_pb2.RunState.Name(run.state)}")
            time.sleep(poll)
        return run

    def leaderboard(
        self, run: str, limit: int = 0, metric: common_pb2.Metric = common_pb2.METRIC_UNSPECIFIED
    ) -> run_pb2.GetLeaderboardResponse:
        """The ranked results (all of them, or the first `limit`) in one response."""
        request = run_pb2.GetLeaderboardRequest(
            run=resource(run, "runs"), metric=metric, page_size=min(limit or PAGE, PAGE)
        )
        first = self._call(self.stub.GetLeaderboard, request)
        out = run_pb2.GetLeaderboardResponse()
        out.CopyFrom(first)
        while out.next_page_token and (not limit or len(out.entries) < limit):
            request.page_token = out.next_page_token
            page = self._call(self.stub.GetLeaderboard, request)
            out.entries.extend(page.entries)
            out.next_page_token = page.next_page_token
        if limit:
            del out.entries[limit:]
        return out

    def list_model_results(self, run: str, full: bool = False) -> Iterator[run_pb2.ModelResult]:
        view = run_pb2.MODEL_RESULT_VIEW_FULL if full else run_pb2.MODEL_RESULT_VIEW_BASIC
        request = run_pb2.ListModelResultsRequest(run=resource(run, "runs"), view=view)
        return self._pages(self.stub.ListModelResults, request, lambda page: page.model_results)

    def get_model_result(self, name: str) -> run_pb2.ModelResult:
        return self._call(self.stub.GetModelResult, run_pb2.GetModelResultRequest(name=resource(name, "modelResults")))

    def export_run(self, run: str, format: run_pb2.ExportFormat, path: str | Path | None = None) -> Path:
        """Save the export; `path` None: the file name the server suggests, here."""
        request = run_pb2.ExportRunResultsRequest(run=resource(run, "runs"), format=format)
        stream = self.stub.ExportRunResults(request, metadata=self._metadata(), timeout=3600)
        first = next(stream)
        target = Path(path) if path else Path(first.filename)
        _save(_prepend(first, stream), target)
        return target

    # -------------------------------------------------------------- models

    def train_model(
        self, result: str, wait: bool = True, timeout: float = 3600, include_holdout: bool = False
    ) -> model_pb2.TrainedModel:
        """Refit a result's pipeline on every training row (`include_holdout`:
        the holdout rows too, and the model cannot be tested); with `wait`,
        until it is READY or FAILED."""
        request = model_pb2.TrainModelRequest(
            model_result=resource(result, "modelResults"), include_holdout=include_holdout
        )
        model = self._call(self.stub.TrainModel, request)
        deadline = time.monotonic() + timeout
        while wait and model.state == model_pb2.TrainedModel.STATE_TRAINING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model.name} still training after {timeout:.0f} s")
            time.sleep(0.5)
            model = self.get_trained_model(model.name)
        return model

    def get_trained_model(self, name: str) -> model_pb2.TrainedModel:
        return self._call(
            self.stub.GetTrainedModel, model_pb2.GetTrainedModelRequest(name=resource(name, "trainedModels"))
        )

    def list_trained_models(self, filter: str = "") -> Iterator[model_pb2.TrainedModel]:
        request = model_pb2.ListTrainedModelsRequest(filter=filter)
        return self._pages(self.stub.ListTrainedModels, request, lambda page: page.trained_models)

    def test_model(self, name: str) -> model_pb2.HoldoutEvaluation:
        request = model_pb2.TestModelRequest(name=resource(name, "trainedModels"))
        return self._call(self.stub.TestModel, request, timeout=max(self.connection.timeout, 600))

    def predict_rows(self, name: str, rows: Iterable[dict[str, Any]]) -> model_pb2.PredictResponse:
        request = model_pb2.PredictRequest(name=resource(name, "trainedModels"))
        for row in rows:
            request.records.rows.add().update(row)
        return self._call(self.stub.Predict, request)

    def predict_file(
        self, name: str, path: str | Path, progress: Callable[[int], None] | None = None
    ) -> Iterator[model_pb2.PredictStreamResponse]:
        """Predictions for a CSV file of any size, in input order, while it streams."""
        path = Path(path)

        def messages() -> Iterator[model_pb2.PredictStreamRequest]:
            header = model_pb2.PredictStreamHeader(name=resource(name, "trainedModels"))
            yield model_pb2.PredictStreamRequest(header=header)
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield model_pb2.PredictStreamRequest(csv_chunk=chunk)
                    if progress:
                        progress(len(chunk))

        return self.stub.PredictStream(messages(), metadata=self._metadata(), timeout=3600)


def _prepend(first: T, rest: Iterator[T]) -> Iterator[T]:
    yield first
    yield from rest


def _save(messages: Iterable[Any], path: Path) -> int:
    """Write the `chunk`s of a stream to `path` (through a temporary file, so a
    failed download leaves no partial file); returns the size."""
    partial = path.with_name(path.name + ".part")
    size = 0
    try:
        with partial.open("wb") as out:
            for message in messages:
                out.write(message.chunk)
                size += len(message.chunk)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return size
