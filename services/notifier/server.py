"""How the notifier process is put together: the notifier's parts
(notifier.py) and the servicer, served by automl.common.server."""

from __future__ import annotations

from automl.common.server import ServiceDefinition, lifespan
from automl.common.settings import Settings
from automl.v1 import notifier_service_pb2, notifier_service_pb2_grpc
from services.notifier.notifier import Notifier
from services.notifier.servicer import NotifierServicer


def build(settings: Settings) -> ServiceDefinition:
    notifier = Notifier(settings)
    servicer = NotifierServicer(notifier, settings)
    return ServiceDefinition(
        name="notifier",
        descriptors=(notifier_service_pb2.DESCRIPTOR.services_by_name["Notifier"],),
        port=settings.notifier_port,
        register=lambda server: notifier_service_pb2_grpc.add_NotifierServicer_to_server(servicer, server),
        lifespan=lifespan(notifier),
    )
