"""The one server factory of the suite.

`make_server()` builds a gRPC asyncio server for one service with what every
service has: grpc.health.v1 health, server reflection, the interceptor chain
(automl.common.interceptors) and message size limits. Tests call it in-process;
`run()` is what each service's `__main__` calls: it adds logging, SIGTERM /
SIGINT handling and a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from automl.common import identity, logs
from automl.common.channels import channel_options
from automl.common.interceptors import Authenticate, CallInterceptor
from automl.common.settings import Settings, SettingsError

log = logging.getLogger("automl.server")


@dataclass(frozen=True)
class ServiceDefinition:
    """What one service process serves."""

    name: str
    """Short name for logs and metrics, e.g. "storage"."""
    descriptors: tuple[ServiceDescriptor, ...]
    """The gRPC services it serves, e.g. storage_service_pb2.DESCRIPTOR.services_by_name["Storage"].
    Descriptors, not names: holding them guarantees reflection can serve their files."""
    port: int
    """Default port (from the settings)."""
    register: Callable[[grpc.aio.Server], None]
    """Adds the servicers to a server."""
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    """Interceptors that run before the common chain (e.g. the gateway's auth)."""
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None
    """Work that lives as long as the server (e.g. the gateway's HTTP port)."""
    authenticate: Authenticate | None = None
    """Where the caller's tenant comes from (the gateway's API keys); None:
    trusted from the metadata, as between internal services."""
    public: bool = False
    """Serves users: TLS applies when AUTOML_TLS_CERT_FILE is set."""
    local_socket: str = ""
    """Also serve, without TLS, on this Unix socket path (the gateway's HTTP
    door calls its own gRPC server there)."""
    server_options: tuple[tuple[str, int], ...] = ()
    """gRPC channel arguments of this service's server only (e.g. storage's
    flow control), after the common ones."""

    @property
    def grpc_services(self) -> tuple[str, ...]:
        """Fully qualified names of the services, e.g. ("automl.v1.Storage",)."""
        return tuple(d.full_name for d in self.descriptors)


class Part(Protocol):
    """Something a service runs beside its servicer (channels, tasks, pools)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def lifespan(part: Part) -> Callable[[], AbstractAsyncContextManager[None]]:
    """A ServiceDefinition.lifespan that starts `part` before the server
    serves and stops it after the server stopped."""

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        await part.start()
        try:
            yield
        finally:
            await part.stop()

    return running


@dataclass
class Server:
    """A built server: start() it, stop() it. `port` is the bound port."""

    definition: ServiceDefinition
    grpc_server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    _lifespan: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        if self.definition.lifespan is not None:
            await self._lifespan.enter_async_context(self.definition.lifespan())
        await self.grpc_server.start()
        for name in ("", *self.definition.grpc_services):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port, "services": ",".join(self.definition.grpc_services)})

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in flight finish for `grace` seconds, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace)
        await self._lifespan.aclose()
        log.info("stopped")


def make_server(definition: ServiceDefinition, settings: Settings, *, port: int | None = None) -> Server:
    """Build (not start) the server of `definition`; port 0 picks a free port."""
    server = grpc.aio.server(
        interceptors=[
            *definition.interceptors,
            # A service without authenticate is internal: it answers the suite's own services only.
            CallInterceptor(
                definition.name,
                definition.authenticate,
                None if definition.authenticate else identity.Verifier.of(settings),
            ),
        ],
        # grpc enables SO_REUSEPORT by default: a second process on the same port
        # would then share its traffic silently instead of failing to start.
        options=[*channel_options(settings), ("grpc.so_reuseport", 0), *definition.server_options],
    )
    definition.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*definition.grpc_services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{definition.port if port is None else port}"
    try:
        if definition.public and settings.tls_cert_file:
            credentials = grpc.ssl_server_credentials(
                [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())]
            )
            bound = server.add_secure_port(address, credentials)
        elif not definition.public and (internal := identity.server_credentials(settings)) is not None:
            bound = server.add_secure_port(address, internal)  # mutual TLS between the services
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": say which service and setting
        bound = 0
    if bound == 0:
        raise OSError(f"{definition.name}: cannot bind {address} (in use, or not an address of this host)")
    if definition.local_socket:
        Path(definition.local_socket).unlink(missing_ok=True)  # left by a killed process
        server.add_insecure_port(f"unix:{definition.local_socket}")
    return Server(definition, server, health_servicer, bound)


async def serve(definition: ServiceDefinition, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    server = make_server(definition, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    tune_gc(settings.gc_threshold)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_seconds})
    await server.stop(settings.shutdown_grace_seconds)


def tune_gc(threshold: int) -> None:
    """Collect less often, and never again what the process made to start.

    A service holding many open streams allocates a few short-lived objects
    per message it sends; at Python's young threshold (700) it collected every
    few hundred messages, and each collection walked every object alive,
    start-up modules and tables included. Frozen, those are skipped; a higher
    threshold lets most per-message objects die by reference count before any
    collection sees them. 0: Python's defaults."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(threshold, middle, oldest)
    log.info("collections tuned", extra={"gc_threshold": threshold, "frozen": gc.get_freeze_count()})


def run(build: Callable[[Settings], ServiceDefinition]) -> None:
    """Entry point of a service process: settings from the environment, then serve.

    Configuration and bind errors end the process with one clear line and
    exit code 2, not a traceback."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"configuration error: {exc}")
    definition = build(settings)
    logs.configure(definition.name, settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(definition, settings))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)
