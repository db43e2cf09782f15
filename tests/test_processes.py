"""The four services as real processes: health, reflection, the public API's
default of wanting a key, the gateway's HTTP port, graceful shutdown, clear
start-up errors."""

from __future__ import annotations

import gc
import importlib
import json
import pkgutil
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import automl.v1
from automl.common import health
from automl.common.server import tune_gc
from automl.v1 import automl_service_pb2_grpc, dataset_pb2
from tests import internal
from tests.conftest import ROOT, SERVICES, free_port, suite_env, wait_serving

# Every service declared in protos/automl/v1, read from the generated modules.
PROTO_SERVICES = {
    service.full_name
    for module in pkgutil.iter_modules(automl.v1.__path__)
    if module.name.endswith("_pb2")
    for service in importlib.import_module(f"automl.v1.{module.name}").DESCRIPTOR.services_by_name.values()
}


@pytest.mark.parametrize(("name", "service"), [(n, s) for n, _, s, _ in SERVICES])
def test_health_serving(suite, name, service):
    assert health.check(suite.target(name)) == "SERVING"
    assert health.check(suite.target(name), service) == "SERVING"
    assert health.check(suite.target(name), "automl.v1.NoSuchService") == "UNREACHABLE"  # NOT_FOUND


def test_reflection_names_every_service_of_the_protos(suite):
    listed: set[str] = set()
    for name, _, service, _ in SERVICES:
        with grpc.insecure_channel(suite.target(name)) as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert {service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
            listed |= services
    assert {"automl.v1.AutoML", "automl.v1.Storage", "automl.v1.Runner", "automl.v1.Notifier"} == PROTO_SERVICES
    assert listed >= PROTO_SERVICES


def test_reflection_serves_full_descriptors(suite):
    with grpc.insecure_channel(suite.target("gateway")) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindServiceByName("automl.v1.AutoML").FindMethodByName("WatchRun")
        assert method.server_streaming
        assert method.output_type.full_name == "automl.v1.WatchRunResponse"


def test_public_api_wants_an_api_key_by_default(suite):
    with grpc.insecure_channel(suite.target("gateway")) as channel:
        stub = automl_service_pb2_grpc.AutoMLStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/x"), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in caught.value.details()


def test_gateway_http_serves_health_and_metrics(suite):
    with urllib.request.urlopen(f"{suite.http}/healthz", timeout=5) as reply:
        assert reply.status == 200
        assert b"SERVING" in reply.read()
    with urllib.request.urlopen(f"{suite.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'automl_rpc_requests_total{code="UNAUTHENTICATED",method="GetDataset",service="gateway"}' in text


def test_sigterm_stops_gracefully(tmp_path):
    env = suite_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "services.notifier"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    target = f"127.0.0.1:{env['AUTOML_NOTIFIER_PORT']}"
    wait_serving(target, "automl.v1.Notifier", proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    log = proc.stderr.read().decode()
    assert 'msg="shutting down"' in log
    assert "msg=stopped" in log
    assert health.check(target) == "UNREACHABLE"


@pytest.mark.parametrize("threshold", ["12345", "0"])
def test_garbage_collection_tuned_once_serving(tmp_path, threshold):
    env = suite_env(tmp_path) | {"AUTOML_GC_THRESHOLD": threshold}
    proc = subprocess.Popen([sys.executable, "-m", "services.notifier"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        wait_serving(f"127.0.0.1:{env['AUTOML_NOTIFIER_PORT']}", "automl.v1.Notifier", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    tuned = [line for line in proc.stderr.read().decode().splitlines() if 'msg="collections tuned"' in line]
    if threshold == "0":  # Python's defaults: nothing said, nothing frozen
        assert not tuned
        return
    assert len(tuned) == 1 and "gc_threshold=12345" in tuned[0]
    frozen = int(tuned[0].split("frozen=")[1].split()[0])
    assert frozen > 10_000  # the modules and tables of the started service


def test_tune_gc_sets_the_threshold_and_freezes():
    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tune_gc(5000)
        assert gc.get_threshold() == (5000, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_bad_setting_stops_with_one_clear_line(tmp_path):
    env = suite_env(tmp_path) | {"AUTOML_STORAGE_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "services.storage"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert result.stderr.strip() == "configuration error: AUTOML_STORAGE_PORT='not-a-port': expected int"


def test_port_in_use_is_a_clear_error(suite, tmp_path):
    env = suite_env(tmp_path) | {"AUTOML_RUNNER_PORT": suite.target("runner").rsplit(":", 1)[1]}
    result = subprocess.run(
        [sys.executable, "-m", "services.runner"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "cannot bind 127.0.0.1:" in result.stderr


def test_json_logs_carry_request_ids(tmp_path):
    env = suite_env(tmp_path) | {"AUTOML_LOG_FORMAT": "json", "AUTOML_GATEWAY_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "services.runner"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    target = f"127.0.0.1:{env['AUTOML_RUNNER_PORT']}"
    try:
        wait_serving(target, "automl.v1.Runner", proc)
        with internal.channel(target) as channel:
            call = channel.unary_unary("/automl.v1.Runner/ExecuteRun", lambda m: b"", lambda b: b)
            with pytest.raises(grpc.RpcError):
                call(b"", metadata=[("x-request-id", "trace-me")], timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines()]
    rpc = [line for line in lines if line.get("method") == "/automl.v1.Runner/ExecuteRun"]
    assert rpc and rpc[0]["request_id"] == "trace-me" and rpc[0]["code"] == "INVALID_ARGUMENT"
    assert rpc[0]["service"] == "runner" and rpc[0]["level"] == "info"  # a caller's mistake, not ours
