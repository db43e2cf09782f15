"""How the notifier process is put together."""

from __future__ import annotations

from automl.common.server import ServiceDefinition
from automl.common.settings import Settings
from automl.v1 import notifier_service_pb2, notifier_service_pb2_grpc
from services.notifier.servicer import NotifierServicer


def build(settings: Settings) -> ServiceDefinition:
    return ServiceDefinition(
        name="notifier",
        descriptors=(notifier_service_pb2.DESCRIPTOR.services_by_name["Notifier"],),
        port=settings.notifier_port,
        register=lambda server: notifier_service_pb2_grpc.add_NotifierServicer_to_server(NotifierServicer(), server),
    )
