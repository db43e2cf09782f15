"""How the gateway process is put together: the public gRPC service with its
authentication, the supervisor, and the HTTP port (metrics, the HTTP/JSON
door)."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from automl.common.interceptors import CallInterceptor
from automl.common.server import ServiceDefinition
from automl.common.settings import Settings
from automl.v1 import automl_service_pb2, automl_service_pb2_grpc
from gateway.auth import ApiKeyAuth, FailureLimit, no_auth
from gateway.backends import Backends
from gateway.cache import AnswerCache
from gateway.control import RunControl
from gateway.http import serve_http
from gateway.inprocess import Methods
from gateway.servicer import AutoMLServicer
from gateway.supervisor import Supervisor
from gateway.transcoding import Limits, Transcoder


def build(settings: Settings) -> ServiceDefinition:
    backends = Backends(settings)
    control = RunControl(backends)
    supervisor = Supervisor(backends, control, settings)
    # Proves to the authentication that a call on the local socket comes from
    # the HTTP door, which then names the client address it served.
    door_token = secrets.token_urlsafe(32)
    failures = FailureLimit(settings.auth_max_failures, settings.auth_failure_window_seconds)
    authenticate = (
        no_auth
        if settings.auth == "none"
        else ApiKeyAuth(backends, settings.api_key_cache_seconds, failures, door_token)
    )

    service = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]
    cache = AnswerCache.of(settings)
    servicer = AutoMLServicer(backends, control, cache)

    def register(server: grpc.aio.Server) -> None:
        automl_service_pb2_grpc.add_AutoMLServicer_to_server(servicer, server)

    # The HTTP door calls the same servicer through the same interceptor chain
    # (auth, validation, metrics): unary methods and server streams
    # in-process (gateway.inprocess: a CallInterceptor made as make_server
    # makes the server's), client streams on a local socket.
    methods = Methods(register, [CallInterceptor("gateway", authenticate, None)])
    socket = Path(tempfile.gettempdir()) / f"automl-gateway-{os.getpid()}.sock"
    limits = Limits(
        settings.http_max_body_bytes,
        settings.http_max_upload_bytes,
        settings.http_max_json_depth,
        settings.http_gzip_bytes,
    )
    transcoder = Transcoder(
        service, f"unix:{socket}", settings.max_message_bytes, limits, door_token, methods, cache.memo
    )

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await backends.start()
        await supervisor.start()
        await transcoder.start()
        try:
            async with serve_http(settings, transcoder):
                yield
        finally:
            await transcoder.stop()
            await supervisor.stop()
            await backends.stop()
            socket.unlink(missing_ok=True)

    return ServiceDefinition(
        name="gateway",
        descriptors=(service,),
        port=settings.gateway_port,
        register=register,
        lifespan=lifespan,
        authenticate=authenticate,
        public=True,
        local_socket=str(socket),
    )
