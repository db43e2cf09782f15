"""How the runner process is put together: the Runner (channels to storage
and the notifier, the worker fork server) lives as long as the server."""

from __future__ import annotations

from automl.common.server import ServiceDefinition, lifespan
from automl.common.settings import Settings
from automl.v1 import runner_service_pb2, runner_service_pb2_grpc
from services.runner import clients
from services.runner.runner import Runner
from services.runner.servicer import RunnerServicer


def build(settings: Settings) -> ServiceDefinition:
    clients.configure_outbox(settings.runner_outbox_events)
    runner = Runner(settings)
    servicer = RunnerServicer(runner)
    return ServiceDefinition(
        name="runner",
        descriptors=(runner_service_pb2.DESCRIPTOR.services_by_name["Runner"],),
        port=settings.runner_port,
        register=lambda server: runner_service_pb2_grpc.add_RunnerServicer_to_server(servicer, server),
        lifespan=lifespan(runner),
    )
