"""Streams through the gateway: WatchRun resumed mid-run with no gap and no
duplicate, Subscribe with a token, downloads, PredictStream; the metrics
and TLS of the public port."""

from __future__ import annotations

import subprocess
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, event_pb2, model_pb2
from gateway.exports import hyper_parameters
from tests.conftest import spawn, suite_env
from tests.runner.conftest import seconds, sklearn_csv


def test_watch_resumes_mid_run_without_gap_or_duplicate(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, max_models=8)
    request = event_pb2.WatchRunRequest(name=run.name, after_sequence=0)
    first: list[event_pb2.Event] = []
    stream = client.stub.WatchRun(request, metadata=client.metadata, timeout=120)
    snapshot = next(stream).snapshot
    assert snapshot.run.name == run.name
    for message in stream:
        first += message.batch.events
        if len(first) >= 3:
            stream.cancel()  # the client goes away mid-run
            break
    snapshot, rest = client.watch(run, after=first[-1].sequence)
    assert snapshot.run.stop_conditions.max_models == 8
    sequences = [e.sequence for e in first + rest]
    assert sequences == list(range(1, len(sequences) + 1))
    assert rest[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED


def test_snapshot_of_a_live_run_has_budget_and_best(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, max_duration=seconds(30), max_models=4)
    deadline = time.monotonic() + 60
    while not client.get(run).best_model_result:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stream = client.stub.WatchRun(event_pb2.WatchRunRequest(name=run.name), metadata=client.metadata, timeout=60)
    snapshot = next(stream).snapshot
    stream.cancel()
    if snapshot.run.state == c.RUN_STATE_RUNNING:
        left = snapshot.budget_left.ToTimedelta().total_seconds()
        elapsed = snapshot.elapsed.ToTimedelta().total_seconds()
        assert 0 < left <= 30 and abs(left + elapsed - 30) < 0.5
    assert snapshot.best_model_result.name == snapshot.run.best_model_result
    assert not snapshot.best_model_result.folds  # the BASIC view
    client.wait_end(run)


def test_subscribe_with_a_token(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("iris"), "target")
    created = client.call(
        "CreateSubscription",
        event_pb2.CreateSubscriptionRequest(
            subscription=event_pb2.Subscription(
                experiment=experiment.name, event_types=[event_pb2.EVENT_TYPE_RUN_FINISHED]
            )
        ),
    )
    assert created.token
    run = client.wait_end(client.start(experiment, max_models=2))
    stream = client.stub.Subscribe(
        event_pb2.SubscribeRequest(token=created.token, after_global_sequence=0), metadata=client.metadata, timeout=30
    )
    for message in stream:
        if message.batch.events:
            event = message.batch.events[0]
            stream.cancel()
            break
    assert event.run == run.name and event.type == event_pb2.EVENT_TYPE_RUN_FINISHED
    client.call("DeleteSubscription", event_pb2.DeleteSubscriptionRequest(name=created.subscription.name))
    with pytest.raises(grpc.RpcError) as caught:
        list(client.stub.Subscribe(event_pb2.SubscribeRequest(token=created.token), metadata=client.metadata))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_download_and_predict_stream(gateway_suite):
    client = gateway_suite.client()
    data = sklearn_csv("iris")
    experiment = client.experiment(data, "target")
    chunks = client.stub.DownloadDataset(
        dataset_pb2.DownloadDatasetRequest(name=experiment.dataset), metadata=client.metadata
    )
    assert b"".join(m.chunk for m in chunks) == data
    run = client.wait_end(client.start(experiment, max_models=2))
    model = client.train(run.best_model_result)
    rows = data.split(b"\n", 1)[1]

    def requests():
        yield model_pb2.PredictStreamRequest(header=model_pb2.PredictStreamHeader(name=model.name))
        yield model_pb2.PredictStreamRequest(csv_chunk=data.split(b"\n", 1)[0] + b"\n" + rows[:700])
        yield model_pb2.PredictStreamRequest(csv_chunk=rows[700:])

    blocks = list(client.stub.PredictStream(requests(), metadata=client.metadata, timeout=120))
    assert sum(len(b.predictions) for b in blocks) == 150


def test_metrics_of_the_gateway(gateway_suite):
    with urllib.request.urlopen(f"{gateway_suite.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'automl_rpc_requests_total{code="OK",method="StartRun",service="gateway"}' in text
    assert "automl_active_runs{" in text
    assert 'automl_models_evaluated_total{outcome="succeeded"}' in text


def test_hyper_parameters_of_a_pipeline_description():
    description = (
        '{"__type__": "__tuple__", "__items__": ["Pipeline", {"__type__": "__dict__", "__items__": [["steps", '
        '[["scale", {"__type__": "__tuple__", "__items__": ["StandardScaler", {"__type__": "__dict__", '
        '"__items__": [["with_mean", true]]}]}], ["model", {"__type__": "__tuple__", "__items__": '
        '["LGBMClassifier", {"__type__": "__dict__", "__items__": [["n_estimators", 50], '
        '["learning_rate", 0.1]]}]}]]]]}]}'
    )
    assert hyper_parameters(description) == {
        "StandardScaler__with_mean": True,
        "LGBMClassifier__n_estimators": 50,
        "LGBMClassifier__learning_rate": 0.1,
    }
    assert hyper_parameters("not json") == {}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


def test_tls(tmp_path, tls_files):
    """With a certificate and key, the public port speaks TLS only."""
    cert, key = tls_files
    env = suite_env(tmp_path) | {"AUTOML_TLS_CERT_FILE": str(cert), "AUTOML_TLS_KEY_FILE": str(key)}
    target = f"127.0.0.1:{env['AUTOML_GATEWAY_PORT']}"
    proc = spawn("gateway", env, tmp_path / "gateway.log")
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        deadline = time.monotonic() + 30
        while True:
            with grpc.secure_channel(target, credentials) as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                    break
                except grpc.RpcError:
                    assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                    time.sleep(0.2)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        proc.terminate()
        proc.wait(timeout=30)
