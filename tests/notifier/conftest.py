"""Storage and notifier as real processes, and runs to publish events for."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from automl.common import identity
from automl.v1 import (
    common_pb2,
    dataset_pb2,
    experiment_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal
from tests.conftest import spawn, suite_env, wait_serving

NOTIFIER_ENV = {
    "AUTOML_SUBSCRIBER_QUEUE": "1000",
    "AUTOML_HEARTBEAT_SECONDS": "0.5",
    "AUTOML_WEBHOOK_MAX_ATTEMPTS": "3",
    "AUTOML_WEBHOOK_BACKOFF_SECONDS": "0.1",
}


@dataclass
class Services:
    env: dict[str, str]
    logs: Path
    storage: subprocess.Popen[bytes]
    notifier: subprocess.Popen[bytes] | None = None

    @property
    def storage_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_STORAGE_PORT']}"

    @property
    def notifier_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_NOTIFIER_PORT']}"

    def start_notifier(self) -> None:
        log = self.logs / "notifier.log"
        self.notifier = spawn("services.notifier", self.env, log)
        wait_serving(self.notifier_target, "automl.v1.Notifier", self.notifier, log=log)

    def stop_notifier(self) -> int:
        assert self.notifier is not None
        self.notifier.terminate()
        return self.notifier.wait(timeout=20)

    def aio_notifier(self) -> tuple[grpc.aio.Channel, notifier_service_pb2_grpc.NotifierStub]:
        channel = internal.aio_channel(self.notifier_target, identity.RUNNER)
        return channel, notifier_service_pb2_grpc.NotifierStub(channel)

    def new_run(self, tenant: str = "default") -> run_pb2.Run:
        """A dataset, an experiment and a PENDING run in storage."""
        metadata = [("x-automl-tenant", tenant)]
        with internal.channel(self.storage_target, identity.RUNNER) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            data = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(40))
            requests = iter(
                [
                    dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="d")),
                    dataset_pb2.UploadDatasetRequest(chunk=data),
                ]
            )
            dataset = stub.UploadDataset(requests, metadata=metadata, timeout=30)
            experiment = stub.CreateExperiment(
                experiment_pb2.CreateExperimentRequest(
                    experiment=experiment_pb2.Experiment(dataset=dataset.name, target_column="y")
                ),
                metadata=metadata,
                timeout=30,
            )
            return stub.CreateRun(
                storage_service_pb2.CreateRunRequest(
                    run=run_pb2.Run(experiment=experiment.name, stop_conditions=common_pb2.StopConditions(max_models=5))
                ),
                metadata=metadata,
                timeout=30,
            )


def start_services(tmp: Path, extra: dict[str, str]) -> Services:
    env = suite_env(tmp) | NOTIFIER_ENV | extra
    log = tmp / "storage.log"
    storage = spawn("services.storage", env, log)
    services = Services(env, tmp, storage)
    wait_serving(services.storage_target, "automl.v1.Storage", storage, log=log)
    services.start_notifier()
    return services


def stop_services(services: Services) -> None:
    for proc in (services.notifier, services.storage):
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = start_services(tmp_path_factory.mktemp("notifier"), {})
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[Services]:
    """A private pair, for tests that restart the notifier."""
    running = start_services(tmp_path, {})
    try:
        yield running
    finally:
        stop_services(running)
