"""The gateway's gRPC methods called in-process, by the HTTP door (issue 23).

The HTTP door used to call the gateway's own gRPC server over a local socket,
so that an HTTP call went through the same interceptor chain (API key,
tenant, request id, access log, metrics, the error map) and the same
servicer (validation, forwarding) as a gRPC call. It still does, without the
socket: `Methods` holds the servicer's handlers wrapped by a CallInterceptor
built exactly as the server's (automl.common.server.make_server: same class,
service name and authentication), and calls them with a `LocalCall` for
context, which plays the part of grpc.aio's ServicerContext: the invocation
metadata (the door's, as it sent it on the socket: request id,
authorization, the client address and the door's token, with "unix:" as the
peer, as the socket gave), and the status an abort sets. The request and the
answer stay Python messages: no serializing, no HTTP/2, no second pass
through the event loop.

Unary methods and server streams go in-process; client streams (uploads,
PredictStream) stay on the local socket (gateway.transcoding): their bytes
are streamed through grpc's flow control as before.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc

from automl.common.interceptors import CallInterceptor

PEER = "unix:"
"""What the socket's calls had as peer: the door's token is believed from it only (gateway.auth)."""

if TYPE_CHECKING:  # grpc's classes are not generic at run time
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    # What an interceptor is given to get the handler it wraps (grpc.aio.ServerInterceptor).
    Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
    # What grpc.aio runs for a unary and a server-streaming method, given a
    # ServicerContext (here a LocalCall in its part): grpc-stubs types
    # RpcMethodHandler's behaviours for the blocking server.
    UnaryBehavior: TypeAlias = Callable[[Any, "LocalCall"], Awaitable[Any]]
    StreamBehavior: TypeAlias = Callable[[Any, "LocalCall"], AsyncIterator[Any]]


class LocalCall:
    """A ServicerContext for a call made in-process: what the interceptor
    chain and the servicer read and set on one."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._cancelled = False

    # read by the chain
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return PEER

    def auth_context(self) -> dict[str, Any]:
        return {}

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    # set by the chain or the servicer
    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing_metadata or ())
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata or ())

    def set_compression(self, compression: grpc.Compression) -> None:
        """No wire here: the HTTP door compresses its own answers."""

    def disable_next_message_compression(self) -> None:
        pass

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        pass

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._code is not None or self._cancelled

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        pass


class LocalError(Exception):
    """A call made in-process ended with a status other than OK."""

    def __init__(self, call: LocalCall) -> None:
        super().__init__(call.details())
        self.call = call

    def code(self) -> grpc.StatusCode:
        return self.call.code() or grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self.call.details()

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self.call.trailing_metadata()


class _Details:
    """grpc.HandlerCallDetails of a method (the chain reads `method` only)."""

    def __init__(self, method: str, metadata: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        self.method = method
        self.invocation_metadata = metadata


class _Registry:
    """What a generated add_*Servicer_to_server function registers, kept."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.handlers |= {f"/{service}/{name}": handler for name, handler in handlers.items()}


class Methods:
    """The servicer's methods, each wrapped once by the interceptor chain."""

    def __init__(self, register: Callable[[grpc.aio.Server], None], interceptors: Sequence[CallInterceptor]) -> None:
        registry = _Registry()
        # _Registry has what a generated add_*Servicer_to_server calls on its server.
        register(cast(grpc.aio.Server, registry))
        self._raw = registry.handlers
        self._interceptors = list(interceptors)
        self._wrapped: dict[str, Handler] = {}

    async def handler(self, method: str) -> Handler:
        """`method`'s handler through the chain (built on first use, then kept)."""
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            raw = self._raw[method]

            async def innermost(details: grpc.HandlerCallDetails) -> Handler | None:
                return raw

            continuation: Continuation = innermost
            for interceptor in reversed(self._interceptors):  # the first interceptor runs first, as in grpc
                continuation = _chained(interceptor, continuation)
            chained = await continuation(_Details(method))
            if chained is None:  # the chain wraps the handler it is given: never
                raise LookupError(f"no handler for {method}")
            wrapped = self._wrapped[method] = chained
        return wrapped

    async def unary(self, method: str, request: Any, metadata: Sequence[tuple[str, str]]) -> Any:
        """Call a unary method; raises LocalError for a status other than OK."""
        handler = await self.handler(method)
        call = LocalCall(metadata)
        try:
            return await cast("UnaryBehavior", handler.unary_unary)(request, call)
        except grpc.aio.AbortError:
            raise LocalError(call) from None

    def stream(self, method: str, request: Any, metadata: Sequence[tuple[str, str]]) -> LocalStream:
        """Call a server-streaming method: its answers, as a grpc.aio call's."""
        return LocalStream(self, method, request, LocalCall(metadata))


def _chained(interceptor: CallInterceptor, continuation: Continuation) -> Continuation:
    async def next_step(details: grpc.HandlerCallDetails) -> Handler | None:
        return await interceptor.intercept_service(continuation, details)

    return next_step


_END = object()


class LocalStream:
    """A server stream called in-process, read like a grpc.aio call
    (`async for`, `cancel()`). The handler runs in a task of its own, as
    grpc runs each call: its context variables (tenant, request id) and a
    cancellation (the client left, a revoked key's) stay the call's. One
    message at a time is handed over: a slow reader holds the stream back
    (flow control), as the socket did."""

    def __init__(self, methods: Methods, method: str, request: Any, call: LocalCall) -> None:
        self.methods = methods
        self.method = method
        self.request = request
        self.call = call
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            handler = await self.methods.handler(self.method)
            async for message in cast("StreamBehavior", handler.unary_stream)(self.request, self.call):
                await self._queue.put(message)
            await self._queue.put(_END)
        except grpc.aio.AbortError:
            await self._queue.put(LocalError(self.call))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            await self._queue.put(exc)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self.call._cancelled = True
            self._task.cancel()
