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

from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)
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
