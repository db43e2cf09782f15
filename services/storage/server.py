"""How the storage process is put together."""

from __future__ import annotations

from automl.common.server import ServiceDefinition
from automl.common.settings import Settings
from automl.v1 import storage_service_pb2, storage_service_pb2_grpc
from services.storage.servicer import StorageServicer


def build(settings: Settings) -> ServiceDefinition:
    return ServiceDefinition(
        name="storage",
        descriptors=(storage_service_pb2.DESCRIPTOR.services_by_name["Storage"],),
        port=settings.storage_port,
        register=lambda server: storage_service_pb2_grpc.add_StorageServicer_to_server(StorageServicer(), server),
    )
