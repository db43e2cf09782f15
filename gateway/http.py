"""The gateway's HTTP port: the public API over HTTP/JSON (transcoded from the
protos, gateway.transcoding), its OpenAPI document and a page to read it, the
web dashboard (static pages under /ui that read that API), Prometheus metrics
and a liveness probe. HTTPS with the gRPC port's certificate when
AUTOML_TLS_CERT_FILE is set; the metrics on a listener of their own, off the
public port, when AUTOML_METRICS_PORT is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import TypedDict, Unpack

import grpc
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from automl.common.settings import Settings
from gateway.transcoding import HTTP_STATUS, Transcoder, error_body

log = logging.getLogger("automl.http")

HTTP_REQUESTS = Counter("automl_http_requests_total", "HTTP/JSON API requests.", ["method", "status"])
HTTP_LATENCY = Histogram(
    "automl_http_duration_seconds",
    "Duration of HTTP/JSON API requests until the response starts.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
DASHBOARD = Path(__file__).parent / "static" / "dashboard"


class _Tls(TypedDict, total=False):
    """uvicorn.Config's TLS arguments: none (plain HTTP), or both."""

    ssl_certfile: str
    ssl_keyfile: str


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "SERVING"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def openapi_document() -> bytes:
    return resources.files("gateway").joinpath("openapi.json").read_bytes()


async def openapi(request: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(resources.files("gateway").joinpath("static/api.html").read_text(encoding="utf-8"))


async def plotly_js(request: Request) -> Response:
    """The charting library of the dashboard, from the plotly package (no CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "public, max-age=86400"})


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/")


def make_app(transcoder: Transcoder | None = None, with_metrics: bool = True) -> Starlette:
    routes: list[Route | Mount] = [
        Route("/", home),
        Route("/healthz", healthz),
        *([Route("/metrics", metrics)] if with_metrics else []),
        Route("/openapi.json", openapi),
        Route("/docs", docs),
        # The dashboard: static pages that read the HTTP/JSON API below.
        Route("/ui/vendor/plotly.min.js", plotly_js),
        Mount("/ui", StaticFiles(directory=DASHBOARD, html=True, check_dir=False), name="ui"),
    ]
    if transcoder is not None:

        async def api(request: Request) -> Response:
            started = time.perf_counter()
            response = await transcoder.handle(request)
            HTTP_REQUESTS.labels(request.method, str(response.status_code)).inc()
            HTTP_LATENCY.labels(request.method).observe(time.perf_counter() - started)
            return response

        routes.append(Route("/v1/{path:path}", api, methods=METHODS))
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})


def make_metrics_app() -> Starlette:
    """The metrics listener's: /metrics, and /healthz for a probe that stays on
    the private network (the public port may speak TLS only)."""
    routes = [Route("/metrics", metrics), Route("/healthz", healthz)]
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    """What no route serves (a path Starlette cannot even match, e.g. with a
    newline): the API's error form, not a text page."""
    code = grpc.StatusCode.NOT_FOUND if getattr(exc, "status_code", 404) == 404 else grpc.StatusCode.UNIMPLEMENTED
    body = error_body(code, f"no API method at {request.method} {request.url.path}")
    return JSONResponse(body, status_code=HTTP_STATUS[code])


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the gateway's event loop: the gRPC server's signal
    handling stops both, so uvicorn must not install its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(settings: Settings, transcoder: Transcoder | None = None) -> AsyncIterator[None]:
    """Serve the HTTP port (and the metrics port, if set) while the context is open."""
    separate = settings.metrics_port != 0
    grace = settings.shutdown_grace_seconds
    tls: _Tls = {}
    if settings.tls_cert_file:  # the HTTP door carries API keys: it takes the gRPC port's certificate
        tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    async with contextlib.AsyncExitStack() as stack:
        if separate:  # plain HTTP: for a network the public does not reach (a Prometheus beside the suite)
            host = settings.metrics_host or settings.host
            metrics = _serving("metrics", make_metrics_app(), host, settings.metrics_port, grace)
            await stack.enter_async_context(metrics)
        app = make_app(transcoder, with_metrics=not separate)
        await stack.enter_async_context(_serving("http", app, settings.host, settings.http_port, grace, **tls))
        yield


@contextlib.asynccontextmanager
async def _serving(
    name: str, app: Starlette, host: str, port: int, grace: float, **tls: Unpack[_Tls]
) -> AsyncIterator[None]:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        # Bounded: a TLS connection closes only once the client answers the
        # close (asyncio waits 30 s for one that does not), and a stop must
        # not wait on idle clients.
        timeout_graceful_shutdown=grace,  # type: ignore[arg-type]  # uvicorn's hint: int; it is a wait_for timeout
        **tls,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # failed to bind: surface the error now
            await task
            raise OSError(f"gateway {name}: cannot serve on {host}:{port}")
        await asyncio.sleep(0.01)
    log.info("%s serving", name, extra={"port": port, "tls": bool(tls)})
    try:
        yield
    finally:
        server.should_exit = True
        await task
