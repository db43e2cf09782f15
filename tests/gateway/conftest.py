"""The four services as real processes with API keys on, and the calls a
test makes through the public gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from automl.common import identity
from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)
from tests import internal
from tests.conftest import ROOT
from tests.runner.conftest import TERMINAL, Stack, sklearn_csv, start_stack, stop_stack

GATEWAY_ENV = {
    "AUTOML_AUTH": "api_key",
    "AUTOML_API_KEY_CACHE_SECONDS": "0.5",
    "AUTOML_SUPERVISOR_INTERVAL_SECONDS": "0.3",
    "AUTOML_RUNNER_LOST_SECONDS": "5",
    "AUTOML_RUNNER_HEARTBEAT_SECONDS": "0.5",
}


def admin(env: dict[str, str], *args: str) -> object:
    """`python -m gateway.admin --json ...`, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Client:
    """The public API as one tenant sees it."""

    def __init__(self, target: str, key: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = automl_service_pb2_grpc.AutoMLStub(self.channel)
        self.metadata = [("authorization", f"Bearer {key}")] if key else []

    def call(self, method: str, request: object, timeout: float = 60) -> object:
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)

    def upload(self, data: bytes, name: str = "data") -> dataset_pb2.Dataset:
        def requests() -> Iterator[dataset_pb2.UploadDatasetRequest]:
            yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=name))
            for start in range(0, len(data), 256 * 1024):
                yield dataset_pb2.UploadDatasetRequest(chunk=data[start : start + 256 * 1024])

        return self.stub.UploadDataset(requests(), metadata=self.metadata, timeout=120)

    def experiment(self, data: bytes, target: str, **fields: object) -> experiment_pb2.Experiment:
        dataset = self.upload(data)
        experiment = experiment_pb2.Experiment(
            display_name="test", dataset=dataset.name, target_column=target, **fields
        )
        return self.call("CreateExperiment", experiment_pb2.CreateExperimentRequest(experiment=experiment))

    def start(self, experiment: experiment_pb2.Experiment, workers: int = 2, **conditions: object) -> run_pb2.Run:
        request = run_pb2.StartRunRequest(
            experiment=experiment.name,
            stop_conditions=common_pb2.StopConditions(**conditions),
            parallel_workers=workers,
        )
        return self.call("StartRun", request)

    def watch(
        self, run: run_pb2.Run, after: int | None = None, timeout: float = 300
    ) -> tuple[event_pb2.RunSnapshot, list[event_pb2.Event]]:
        """WatchRun to its end: the snapshot and every event."""
        request = event_pb2.WatchRunRequest(name=run.name)
        if after is not None:
            request.after_sequence = after
        snapshot, events = None, []
        for message in self.stub.WatchRun(request, metadata=self.metadata, timeout=timeout):
            kind = message.WhichOneof("content")
            if kind == "snapshot":
                snapshot = message.snapshot
            elif kind == "batch":
                events += message.batch.events
        return snapshot, events

    def get(self, run: run_pb2.Run) -> run_pb2.Run:
        return self.call("GetRun", run_pb2.GetRunRequest(name=run.name))

    def wait_end(self, run: run_pb2.Run, timeout: float = 300) -> run_pb2.Run:
        deadline = time.monotonic() + timeout
        while (current := self.get(run)).state not in TERMINAL:
            assert time.monotonic() < deadline, f"{run.name} still {common_pb2.RunState.Name(current.state)}"
            time.sleep(0.2)
        return current

    def train(self, result: str, timeout: float = 300) -> model_pb2.TrainedModel:
        model = self.call("TrainModel", model_pb2.TrainModelRequest(model_result=result))
        deadline = time.monotonic() + timeout
        while model.state == model_pb2.TrainedModel.STATE_TRAINING:
            assert time.monotonic() < deadline, f"{model.name} still training"
            time.sleep(0.2)
            model = self.call("GetTrainedModel", model_pb2.GetTrainedModelRequest(name=model.name))
        return model

    def close(self) -> None:
        self.channel.close()


@dataclass
class GatewaySuite:
    stack: Stack
    keys: dict[str, str] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.stack.target("gateway")

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def api_key(self) -> str:
        return self.keys["alpha"]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['AUTOML_HTTP_PORT']}"

    def client(self, tenant: str = "alpha", key: str | None = None) -> Client:
        made = Client(self.target, self.keys[tenant] if key is None else key)
        self.clients.append(made)
        return made

    def new_key(self, tenant: str) -> dict[str, str]:
        return admin(self.env, "keys", "create", "--tenant", tenant, "--name", f"test {tenant}")  # type: ignore[return-value]


def start_gateway_suite(folder: Path, extra: dict[str, str] | None = None) -> GatewaySuite:
    stack = start_stack(folder, GATEWAY_ENV | (extra or {}))
    try:
        stack.start("gateway")
        suite = GatewaySuite(stack)
        for tenant in ("alpha", "beta"):
            suite.keys[tenant] = suite.new_key(tenant)["key"]
        return suite
    except BaseException:
        stop_stack(stack)
        raise


def stop_gateway_suite(suite: GatewaySuite) -> None:
    for client in suite.clients:
        client.close()
    stop_stack(suite.stack)


@pytest.fixture(scope="module")
def gateway_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySuite]:
    suite = start_gateway_suite(tmp_path_factory.mktemp("gateway"))
    try:
        yield suite
    finally:
        stop_gateway_suite(suite)


# ------------------------------------------- a tenant's resources, for the tenant matrix


@dataclass
class Owned:
    """Tenant alpha's resources."""

    dataset: str
    experiment: str
    run: str
    result: str
    model: str
    subscription: str
    token: str


@pytest.fixture(scope="module")
def owned(gateway_suite) -> Owned:
    alpha = gateway_suite.client("alpha")
    experiment = alpha.experiment(sklearn_csv("iris"), "target")
    run = alpha.start(experiment, max_models=2)
    run = alpha.wait_end(run)
    model = alpha.train(run.best_model_result)
    created = alpha.call(
        "CreateSubscription",
        event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(run=run.name)),
    )
    return Owned(
        experiment.dataset,
        experiment.name,
        run.name,
        run.best_model_result,
        model.name,
        created.subscription.name,
        created.token,
    )


def requests(o: Owned) -> dict[str, object]:
    """One request per public RPC that names alpha's resources."""
    return {
        "GetDataset": dataset_pb2.GetDatasetRequest(name=o.dataset),
        "DeleteDataset": dataset_pb2.DeleteDatasetRequest(name=o.dataset, force=True),
        "PreviewDataset": dataset_pb2.PreviewDatasetRequest(name=o.dataset),
        "DownloadDataset": dataset_pb2.DownloadDatasetRequest(name=o.dataset),
        "CreateExperiment": experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(display_name="x", dataset=o.dataset, target_column="target")
        ),
        "GetExperiment": experiment_pb2.GetExperimentRequest(name=o.experiment),
        "UpdateExperiment": experiment_pb2.UpdateExperimentRequest(
            experiment=experiment_pb2.Experiment(name=o.experiment, display_name="taken over"),
            update_mask={"paths": ["display_name"]},
        ),
        "DeleteExperiment": experiment_pb2.DeleteExperimentRequest(name=o.experiment),
        "StartRun": run_pb2.StartRunRequest(
            experiment=o.experiment, stop_conditions=common_pb2.StopConditions(max_models=1)
        ),
        "GetRun": run_pb2.GetRunRequest(name=o.run),
        "StopRun": run_pb2.StopRunRequest(name=o.run),
        "WatchRun": event_pb2.WatchRunRequest(name=o.run, after_sequence=0),
        "GetLeaderboard": run_pb2.GetLeaderboardRequest(run=o.run),
        "ListModelResults": run_pb2.ListModelResultsRequest(run=o.run),
        "GetModelResult": run_pb2.GetModelResultRequest(name=o.result),
        "ExportRunResults": run_pb2.ExportRunResultsRequest(run=o.run, format=run_pb2.EXPORT_FORMAT_CSV),
        "TrainModel": model_pb2.TrainModelRequest(model_result=o.result),
        "GetTrainedModel": model_pb2.GetTrainedModelRequest(name=o.model),
        "TestModel": model_pb2.TestModelRequest(name=o.model),
        "Predict": model_pb2.PredictRequest(name=o.model, csv=b"a,b\n1,2\n"),
        "PredictStream": [model_pb2.PredictStreamRequest(header=model_pb2.PredictStreamHeader(name=o.model))],
        "CreateSubscription": event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(run=o.run)),
        "GetSubscription": event_pb2.GetSubscriptionRequest(name=o.subscription),
        "DeleteSubscription": event_pb2.DeleteSubscriptionRequest(name=o.subscription),
        "Subscribe": event_pb2.SubscribeRequest(token=o.token, after_global_sequence=0),
    }


# RPCs that name no existing resource: checked by what they list or create instead.
LISTS = {"ListDatasets", "ListExperiments", "ListRuns", "ListTrainedModels", "ListSubscriptions"}
CREATES_OWN = {"UploadDataset"}


# ------------------------------------------- a run written as a runner would, without a search

CRAFTED_NOTES = [
    "3-fold cross-validation instead of 5: classes 'rare' (2 rows) have fewer search rows than 5 folds",
    "aikit's guided search failed (ValueError: no proposal): candidates are drawn at random for the rest of the run",
]
CRAFTED_REASON = "the worker pool broke: BrokenProcessPool"


def crafted_run(suite: GatewaySuite, experiment: str, tenant: str = "default") -> run_pb2.Run:
    """A FAILED run written through storage and the notifier as a runner would,
    with what the runner's stronger search records: notes (at the claim and
    through a heartbeat), a result on 3 of 5 folds raced on a sample of rows,
    a failed one, two interrupted by the stop, and an ensemble of two results.
    Results: #1 (0.90, 5 folds, 120 rows), #2 (0.85, 3 folds, 40 rows), #3
    failed, #4 and #5 interrupted, #6 the ensemble (0.93: #1 weighs 0.75, #2 0.25)."""
    from automl.v1 import notifier_service_pb2, notifier_service_pb2_grpc, storage_service_pb2
    from automl.v1 import storage_service_pb2_grpc as storage_grpc

    c, R = common_pb2, run_pb2.ModelResult
    metadata = [("x-automl-tenant", tenant)]
    storage_channel = internal.channel(suite.stack.target("storage"), identity.RUNNER)
    notifier_channel = internal.channel(suite.stack.target("notifier"), identity.RUNNER)
    storage = storage_grpc.StorageStub(storage_channel)
    notifier = notifier_service_pb2_grpc.NotifierStub(notifier_channel)
    try:
        run = storage.CreateRun(
            storage_service_pb2.CreateRunRequest(
                run=run_pb2.Run(experiment=experiment, stop_conditions=c.StopConditions(max_models=10))
            ),
            metadata=metadata,
        )
        run = storage.UpdateRunState(
            storage_service_pb2.UpdateRunStateRequest(
                name=run.name,
                expected_states=[c.RUN_STATE_PENDING],
                state=c.RUN_STATE_RUNNING,
                runner_id="crafted",
                add_notes=CRAFTED_NOTES[:1],
            ),
            metadata=metadata,
        )
        storage.HeartbeatRun(
            storage_service_pb2.HeartbeatRunRequest(name=run.name, runner_id="crafted", add_notes=CRAFTED_NOTES[1:]),
            metadata=metadata,
        )

        def scored(score: float, folds: int, rows: int, job_type: str, family: str) -> run_pb2.ModelResult:
            return R(
                outcome=R.OUTCOME_SUCCEEDED,
                model_family=family,
                pipeline_steps=["NumImputer", family],
                model_json=f'["{family}", {{}}]',
                primary_score=score,
                metrics=[c.MetricSummary(metric=run.primary_metric, mean=score, std=0.01)],
                folds_run=folds,
                fit_time_seconds=0.5,
                sample_rows=rows,
                job_type=job_type,
            )

        first = storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(
                run=run.name,
                model_results=[
                    scored(0.90, 5, 120, "portfolio", "RandomForestClassifier"),
                    scored(0.85, 3, 40, "guided", "LGBMClassifier"),
                    R(outcome=R.OUTCOME_FAILED, model_family="SVC", error_message="ValueError: cannot fit"),
                    R(outcome=R.OUTCOME_INTERRUPTED, model_family="SVC", error_message="the run stopped"),
                    R(outcome=R.OUTCOME_INTERRUPTED, model_family="SVC", error_message="the run stopped"),
                ],
            ),
            metadata=metadata,
        ).model_results
        blend = scored(0.93, 5, 120, "ensemble", "VotingClassifier")
        blend.pipeline_steps[:] = ["RandomForestClassifier", "LGBMClassifier", "VotingClassifier"]
        for member, weight in ((first[0], 0.75), (first[1], 0.25)):
            blend.ensemble_members.add(model_result=member.name, index=member.index, weight=weight)
        storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=run.name, model_results=[blend]),
            metadata=metadata,
        )
        ended = storage.UpdateRunState(
            storage_service_pb2.UpdateRunStateRequest(
                name=run.name,
                expected_states=[c.RUN_STATE_RUNNING],
                state=c.RUN_STATE_FAILED,
                stop_reason=c.STOP_REASON_ERROR,
                status_message=CRAFTED_REASON,
            ),
            metadata=metadata,
        )
        events = [
            event_pb2.Event(run_started=event_pb2.RunStarted(runner_id="crafted", search_rows=120)),
            *(event_pb2.Event(run_note=event_pb2.RunNote(message=note)) for note in CRAFTED_NOTES),
            event_pb2.Event(
                run_finished=event_pb2.RunFinished(
                    state=ended.state,
                    stop_reason=ended.stop_reason,
                    message=ended.status_message,
                    models_evaluated=ended.models_evaluated,
                    models_failed=ended.models_failed,
                    models_stopped=ended.models_stopped,
                    best_model_result=ended.best_model_result,
                    best_score=ended.best_score,
                )
            ),
        ]
        for event in events:
            event.run, event.experiment = run.name, experiment
            event.create_time.GetCurrentTime()
        notifier.Publish(notifier_service_pb2.PublishRequest(events=events), metadata=metadata)
        return ended
    finally:
        storage_channel.close()
        notifier_channel.close()
