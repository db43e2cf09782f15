"""The internal plane trusts no one by default: the suite's services as real
processes, each internal port called with no credential, a wrong one, one
of another install, a forged tenant and "*"; key management tried by those
who may not. Every refusal leaves nothing read or written."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from automl.common import identity
from automl.v1 import (
    dataset_pb2,
    event_pb2,
    notifier_service_pb2_grpc,
    runner_service_pb2,
    runner_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal
from tests.conftest import Suite

UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
ANOTHER_INSTALL = identity.Credentials(b"another-install-secret-0123456789abcdef", identity.GATEWAY)
WRONG = [(identity.IDENTITY_KEY, identity.GATEWAY), (identity.CREDENTIAL_KEY, "f" * 64)]
# A call of each internal service that reads a tenant's data, and one that writes.
CALLS: dict[str, Callable[[grpc.Channel, list[tuple[str, str]]], object]] = {
    "storage read": lambda ch, md: storage_service_pb2_grpc.StorageStub(ch).ListDatasets(
        dataset_pb2.ListDatasetsRequest(), metadata=md, timeout=10
    ),
    "storage write": lambda ch, md: storage_service_pb2_grpc.StorageStub(ch).UploadDataset(
        iter(
            [
                dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="x")),
                dataset_pb2.UploadDatasetRequest(chunk=b"a,b\n1,2\n3,4\n"),
            ]
        ),
        metadata=md,
        timeout=10,
    ),
    "runner": lambda ch, md: runner_service_pb2_grpc.RunnerStub(ch).GetRunnerStatus(
        runner_service_pb2.GetRunnerStatusRequest(), metadata=md, timeout=10
    ),
    "notifier": lambda ch, md: notifier_service_pb2_grpc.NotifierStub(ch).ListSubscriptions(
        event_pb2.ListSubscriptionsRequest(), metadata=md, timeout=10
    ),
}
SERVICE = {"storage read": "storage", "storage write": "storage", "runner": "runner", "notifier": "notifier"}


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def datasets(suite: Suite, tenant: str) -> int:
    with internal.channel(suite.target("storage")) as channel:
        page = storage_service_pb2_grpc.StorageStub(channel).ListDatasets(
            dataset_pb2.ListDatasetsRequest(), metadata=[("x-automl-tenant", tenant)], timeout=10
        )
    return len(page.datasets)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(
    "metadata",
    [[], WRONG, ANOTHER_INSTALL.metadata(), [("x-automl-tenant", "acme")], [("x-automl-tenant", "*")]],
    ids=["none", "wrong", "another install", "tenant without credential", "every tenant without credential"],
)
def test_no_suite_credential_no_answer(suite: Suite, call: str, metadata):
    with grpc.insecure_channel(suite.target(SERVICE[call])) as channel:
        error = refused(lambda: CALLS[call](channel, metadata))
    assert error.code() is UNAUTHENTICATED and "internal service" in error.details()
    assert datasets(suite, "default") == datasets(suite, "acme") == 0


@pytest.mark.parametrize("call", list(CALLS))
def test_every_tenant_only_for_the_supervisor_and_the_notifier(suite: Suite, call: str):
    for who in (identity.GATEWAY, identity.RUNNER):
        with internal.channel(suite.target(SERVICE[call]), who) as channel:
            error = refused(lambda: CALLS[call](channel, [("x-automl-tenant", "*")]))
        assert error.code() is DENIED and "every tenant" in error.details()
    with internal.channel(suite.target(SERVICE[call]), identity.ADMIN) as channel:
        error = refused(lambda: CALLS[call](channel, [("x-automl-tenant", "acme")]))
    assert error.code() is DENIED and "does not act for tenants" in error.details()
    assert datasets(suite, "default") == datasets(suite, "acme") == 0


def test_key_management_only_for_the_gateway_and_the_admin_command(suite: Suite):
    request = storage_service_pb2.CreateApiKeyRequest(
        api_key=storage_service_pb2.ApiKey(tenant="acme", display_name="stolen", prefix="aml_abcdef"),
        key_sha256="ab" * 32,
    )
    for who in (identity.RUNNER, identity.NOTIFIER, identity.SUPERVISOR):
        with internal.channel(suite.target("storage"), who) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            error = refused(lambda: stub.CreateApiKey(request, timeout=10))  # noqa: B023 - called at once
            assert error.code() is DENIED and "only for the gateway and the admin command" in error.details()
            error = refused(lambda: stub.ListApiKeys(storage_service_pb2.ListApiKeysRequest(), timeout=10))  # noqa: B023
            assert error.code() is DENIED
    with internal.channel(suite.target("storage"), identity.ADMIN) as channel:
        keys = storage_service_pb2_grpc.StorageStub(channel).ListApiKeys(
            storage_service_pb2.ListApiKeysRequest(), timeout=10
        )
    assert not keys.api_keys  # none was made
