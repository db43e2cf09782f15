"""How the gateway process is put together: the public gRPC service and the
HTTP port."""

from __future__ import annotations

import functools

from automl.common.server import ServiceDefinition
from automl.common.settings import Settings
from automl.v1 import automl_service_pb2, automl_service_pb2_grpc
from gateway.http import serve_http
from gateway.servicer import AutoMLServicer


def build(settings: Settings) -> ServiceDefinition:
    return ServiceDefinition(
        name="gateway",
        descriptors=(automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"],),
        port=settings.gateway_port,
        register=lambda server: automl_service_pb2_grpc.add_AutoMLServicer_to_server(AutoMLServicer(), server),
        lifespan=functools.partial(serve_http, settings),
    )
