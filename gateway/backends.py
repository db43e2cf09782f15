"""The gateway's channels to the internal services."""

from __future__ import annotations

import grpc

from automl.common import context, identity
from automl.common.channels import connect
from automl.common.settings import Settings
from automl.common.tenants import ALL_TENANTS
from automl.v1 import (
    notifier_service_pb2_grpc,
    runner_service_pb2_grpc,
    storage_service_pb2_grpc,
)


class Backends:
    """Storage, runner and notifier stubs. Calls carry the current call's tenant
    and request id, and fail with domain errors (automl.common.channels);
    `as_tenant()` gives the metadata for work done on a tenant's behalf
    outside a call (the supervisor)."""

    # The *AsyncStub classes exist in the .pyi only: what a *Stub made on a
    # grpc.aio channel is typed as (annotations are not evaluated at run time).
    storage: storage_service_pb2_grpc.StorageAsyncStub
    runner: runner_service_pb2_grpc.RunnerAsyncStub
    notifier: notifier_service_pb2_grpc.NotifierAsyncStub

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.channels: list[grpc.aio.Channel] = []
        self.credentials = identity.Credentials.of(settings, identity.GATEWAY)

    async def start(self) -> None:
        """Open the channels (in the serving event loop: grpc.aio channels
        belong to the loop they were made in); they connect on first use."""
        self.storage = storage_service_pb2_grpc.StorageStub(self._connect(self.settings.storage_address))
        # Runners may be several behind one DNS name (docker compose --scale):
        # spread calls over every address it resolves to.
        self.runner = runner_service_pb2_grpc.RunnerStub(self._connect(self.settings.runner_address, True))
        self.notifier = notifier_service_pb2_grpc.NotifierStub(self._connect(self.settings.notifier_address))

    def _connect(self, target: str, round_robin: bool = False) -> grpc.aio.Channel:
        channel = connect(target, self.settings, self.credentials, lb_policy="round_robin" if round_robin else "")
        self.channels.append(channel)
        return channel

    def as_supervisor(self) -> list[tuple[str, str]]:
        """Metadata of the supervisor's calls: every tenant, under its own identity
        (the only one storage lets speak for every tenant besides the notifier)."""
        return [*as_tenant(ALL_TENANTS), *self.credentials.metadata(identity.SUPERVISOR)]

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.close()
        self.channels.clear()


def as_tenant(tenant: str) -> list[tuple[str, str]]:
    """Metadata of a call made for `tenant` (overrides the current call's)."""
    return [(context.TENANT_KEY, tenant)]
