"""Mutual TLS between the services: the four as real processes, each with its
own certificate from scripts/make_certs.py. A whole run goes through; a
caller without a certificate of the suite's CA gets no answer at all, and a
certificate may speak only as its own identity."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from automl.common import health, identity
from automl.common.channels import blocking_channel
from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    experiment_pb2,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from scripts import make_certs
from tests import internal
from tests.conftest import ROOT, SERVICES, Suite, spawn, suite_env
from tests.runner.conftest import sklearn_csv

pytestmark = pytest.mark.slow


def tls(certs: Path, name: str, ca: str = "ca.pem") -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / ca).read_bytes(),
        private_key=(certs / f"{name}-key.pem").read_bytes(),
        certificate_chain=(certs / f"{name}.pem").read_bytes(),
    )


def env_of(env: dict[str, str], certs: Path, name: str) -> dict[str, str]:
    return env | {
        "AUTOML_INTERNAL_TLS_CA_FILE": str(certs / "ca.pem"),
        "AUTOML_INTERNAL_TLS_CERT_FILE": str(certs / f"{name}.pem"),
        "AUTOML_INTERNAL_TLS_KEY_FILE": str(certs / f"{name}-key.pem"),
    }


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    make_certs.make(folder)
    return folder


@pytest.fixture(scope="module")
def tls_suite(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("tls-suite")
    running = Suite(suite_env(folder) | {"AUTOML_AUTH": "none"})
    try:
        for name, module, service, _ in SERVICES:
            log = folder / f"{name}.log"
            proc = spawn(module, env_of(running.env, certs, name), log)
            running.procs[name] = proc
            probe = None if name == "gateway" else tls(certs, "gateway")
            deadline = time.monotonic() + 60
            while health.check(running.target(name), service, 1.0, tls=probe) != "SERVING":
                assert proc.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, f"{name} not serving over mutual TLS"
                time.sleep(0.2)
        yield running
    finally:
        for proc in running.procs.values():
            proc.terminate()
        for proc in running.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_whole_run_goes_through_mutual_tls(tls_suite: Suite):
    api = automl_service_pb2_grpc.AutoMLStub(grpc.insecure_channel(tls_suite.target("gateway")))
    header = dataset_pb2.UploadDatasetHeader(display_name="iris")
    data = api.UploadDataset(
        iter(
            [
                dataset_pb2.UploadDatasetRequest(header=header),
                dataset_pb2.UploadDatasetRequest(chunk=sklearn_csv("iris")),
            ]
        ),
        timeout=60,
    )
    experiment = api.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(
                display_name="tls", dataset=data.name, target_column="target", cv_folds=3
            )
        ),
        timeout=30,
    )
    run = api.StartRun(
        run_pb2.StartRunRequest(experiment=experiment.name, stop_conditions=common_pb2.StopConditions(max_models=2)),
        timeout=120,
    )
    deadline = time.monotonic() + 180
    while (run := api.GetRun(run_pb2.GetRunRequest(name=run.name), timeout=30)).state in (
        common_pb2.RUN_STATE_PENDING,
        common_pb2.RUN_STATE_RUNNING,
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert run.state == common_pb2.RUN_STATE_SUCCEEDED, run.status_message
    assert run.models_evaluated >= 2  # the runner stored its results in storage, over mutual TLS


def list_datasets(channel: grpc.Channel) -> object:
    return storage_service_pb2_grpc.StorageStub(channel).ListDatasets(dataset_pb2.ListDatasetsRequest(), timeout=5)


def test_without_a_certificate_of_the_suite_no_answer(tls_suite: Suite, certs: Path, tmp_path: Path):
    target = tls_suite.target("storage")
    with internal.channel(target) as plain, pytest.raises(grpc.RpcError) as caught:
        list_datasets(plain)  # a valid credential, but no TLS
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    other = tmp_path / "other"
    make_certs.make(other)  # another install's CA and certificates
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("gateway.pem", "gateway-key.pem"):
        (mixed / name).write_bytes((other / name).read_bytes())
    (mixed / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
    foreign = blocking_channel(target, internal.credentials(), tls=tls(mixed, "gateway"))
    with foreign, pytest.raises(grpc.RpcError) as caught:
        list_datasets(foreign)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_certificate_speaks_only_as_its_own_identity(tls_suite: Suite, certs: Path):
    target = tls_suite.target("storage")
    impostor = blocking_channel(target, internal.credentials(identity.GATEWAY), tls=tls(certs, "runner"))
    with impostor, pytest.raises(grpc.RpcError) as caught:
        list_datasets(impostor)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "may not speak as the gateway" in caught.value.details()
    # The gateway's certificate holds the supervisor too, who alone may ask for every tenant.
    supervisor = internal.credentials(identity.SUPERVISOR)
    with blocking_channel(target, supervisor, tls=tls(certs, "gateway")) as channel:
        records = storage_service_pb2_grpc.StorageStub(channel).ListRunRecords(
            storage_service_pb2.ListRunRecordsRequest(), metadata=[("x-automl-tenant", "*")], timeout=5
        )
    assert records is not None


def test_the_health_probe_and_the_admin_command_present_their_certificates(tls_suite: Suite, certs: Path):
    env = env_of(tls_suite.env, certs, "runner")
    probe = subprocess.run(
        [sys.executable, "-m", "automl.common.health", tls_suite.target("storage"), "automl.v1.Storage"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip() == "SERVING", probe.stderr
    admin = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--json", "keys", "list"],
        cwd=ROOT, env=env_of(tls_suite.env, certs, "admin"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
