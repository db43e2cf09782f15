"""API keys and tenants: no key, a bad key or a revoked key is UNAUTHENTICATED;
tenant B calling any RPC on tenant A's resources gets NOT_FOUND (never
PERMISSION_DENIED, so ids do not leak) and lists none of them."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from automl.v1 import (
    automl_service_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)
from tests import internal
from tests.gateway.conftest import CREATES_OWN, LISTS, admin, requests
from tests.runner.conftest import sklearn_csv

PUBLIC = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]


def call(client, method: str, request: object) -> object:
    rpc = getattr(client.stub, method)
    descriptor = PUBLIC.methods_by_name[method]
    if descriptor.client_streaming:
        request = iter(request)
    reply = rpc(request, metadata=client.metadata, timeout=30)
    return list(reply) if descriptor.server_streaming else reply


def test_the_matrix_covers_every_public_rpc(owned):
    covered = set(requests(owned)) | LISTS | CREATES_OWN
    assert covered == {m.name for m in PUBLIC.methods}


@pytest.mark.parametrize("method", sorted(m.name for m in PUBLIC.methods if m.name not in LISTS | CREATES_OWN))
def test_another_tenant_gets_not_found(gateway_suite, owned, method):
    beta = gateway_suite.client("beta")
    with pytest.raises(grpc.RpcError) as caught:
        call(beta, method, requests(owned)[method])
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND, caught.value.details()
    # And alpha still has everything (nothing was changed, deleted or stopped).
    alpha = gateway_suite.client("alpha")
    assert (
        alpha.call("GetExperiment", experiment_pb2.GetExperimentRequest(name=owned.experiment)).display_name == "test"
    )
    assert alpha.call("GetSubscription", event_pb2.GetSubscriptionRequest(name=owned.subscription)).state == 1


def test_lists_show_nothing_of_another_tenant(gateway_suite, owned):
    beta = gateway_suite.client("beta")
    beta.upload(sklearn_csv("iris"), name="beta's own")
    datasets = beta.call("ListDatasets", dataset_pb2.ListDatasetsRequest())
    assert [d.display_name for d in datasets.datasets] == ["beta's own"]
    assert not beta.call("ListExperiments", experiment_pb2.ListExperimentsRequest()).experiments
    assert not beta.call("ListRuns", run_pb2.ListRunsRequest()).runs
    assert not beta.call("ListTrainedModels", model_pb2.ListTrainedModelsRequest()).trained_models
    assert not beta.call("ListSubscriptions", event_pb2.ListSubscriptionsRequest()).subscriptions
    alpha = gateway_suite.client("alpha")
    assert owned.dataset in [d.name for d in alpha.call("ListDatasets", dataset_pb2.ListDatasetsRequest()).datasets]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "no API key"),
        ([("authorization", "Bearer aml_not-a-key")], "unknown API key"),
        ([("authorization", "Basic dXNlcjpwYXNz")], "Bearer"),
    ],
    ids=["no_key", "bad_key", "wrong_scheme"],
)
def test_unauthenticated(gateway_suite, metadata, message):
    client = gateway_suite.client("alpha")
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.ListDatasets(dataset_pb2.ListDatasetsRequest(), metadata=metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert message in caught.value.details()


def test_a_tenant_in_the_metadata_is_ignored(gateway_suite, owned):
    """Only the key says who the caller is: beta cannot claim alpha's tenant."""
    beta = gateway_suite.client("beta")
    with pytest.raises(grpc.RpcError) as caught:
        beta.stub.GetRun(
            run_pb2.GetRunRequest(name=owned.run),
            metadata=[*beta.metadata, ("x-automl-tenant", "alpha")],
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_revoked_key(gateway_suite, owned):
    created = gateway_suite.new_key("alpha")
    client = gateway_suite.client("alpha", key=created["key"])
    assert client.call("GetRun", run_pb2.GetRunRequest(name=owned.run)).name == owned.run
    listed = admin(gateway_suite.env, "keys", "list")
    assert created["name"] in [k["name"] for k in listed]
    admin(gateway_suite.env, "keys", "revoke", created["name"])
    time.sleep(0.6)  # the gateway trusts a checked key for AUTOML_API_KEY_CACHE_SECONDS (0.5 s here)
    with pytest.raises(grpc.RpcError) as caught:
        client.call("GetRun", run_pb2.GetRunRequest(name=owned.run))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in caught.value.details()


def test_a_revoked_key_ends_its_open_streams(gateway_suite, owned):
    from automl.v1 import common_pb2, storage_service_pb2, storage_service_pb2_grpc

    created = gateway_suite.new_key("alpha")
    client = gateway_suite.client("alpha", key=created["key"])
    with internal.channel(gateway_suite.stack.target("storage")) as channel:  # a run that stays PENDING
        waiting = storage_service_pb2_grpc.StorageStub(channel).CreateRun(
            storage_service_pb2.CreateRunRequest(
                run=run_pb2.Run(experiment=owned.experiment, stop_conditions=common_pb2.StopConditions(max_models=1))
            ),
            metadata=[("x-automl-tenant", "alpha")],
        )
    stream = client.stub.WatchRun(event_pb2.WatchRunRequest(name=waiting.name), metadata=client.metadata, timeout=20)
    assert next(stream).WhichOneof("content") == "snapshot"
    admin(gateway_suite.env, "keys", "revoke", created["name"])
    revoked = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        for _ in stream:
            pass
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED and "revoked" in caught.value.details()
    assert time.monotonic() - revoked < 0.5 + 1.0  # the key-cache window (0.5 s here), and a margin


def test_health_needs_no_key(gateway_suite):
    with grpc.insecure_channel(gateway_suite.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="automl.v1.AutoML"), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
