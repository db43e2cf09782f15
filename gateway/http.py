"""The gateway's HTTP port: Prometheus metrics and a liveness probe (the
dashboard and the HTTP/JSON API join it in later issues)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from automl.common.settings import Settings

log = logging.getLogger("automl.http")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "SERVING"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def make_app() -> Starlette:
    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the gateway's event loop: the gRPC server's signal
    handling stops both, so uvicorn must not install its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(settings: Settings) -> AsyncIterator[None]:
    """Serve the HTTP port while the context is open."""
    config = uvicorn.Config(
        make_app(), host=settings.host, port=settings.http_port, log_config=None, access_log=False, lifespan="off"
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # failed to bind: surface the error now
            await task
            raise OSError(f"gateway HTTP: cannot serve on {settings.host}:{settings.http_port}")
        await asyncio.sleep(0.01)
    log.info("http serving", extra={"port": settings.http_port})
    try:
        yield
    finally:
        server.should_exit = True
        await task
