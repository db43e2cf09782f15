"""The server interceptor chain every service runs: call context (request id,
tenant), structured access log, metrics, and the one place that maps errors
to gRPC status codes."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from automl.common import context, errors, logs, status, streams
from automl.common.identity import Verifier

log = logging.getLogger("automl.rpc")

RPC_REQUESTS = Counter("automl_rpc_requests_total", "gRPC calls served.", ["service", "method", "code"])
RPC_LATENCY = Histogram(
    "automl_rpc_duration_seconds",
    "Duration of served gRPC calls (streams: until the last message).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]
Authenticate = Callable[[dict[str, Any], str], Awaitable[str]]
"""(call metadata, method) -> the caller's tenant; raises errors.Unauthenticated.
One that also has `recheck` (same signature) and `recheck_seconds` is asked
again every recheck_seconds while a stream is open, so that a revoked
credential's streams end (UNAUTHENTICATED) instead of running on. Its answer
must depend only on the call's `authorization` metadata and method: the open
streams of one credential are rechecked together."""


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method handler so that each call gets a request id and tenant
    from its metadata, one log line and metrics when it ends, and a status code
    and message a caller can act on when it fails:

    - a request that is not a valid message (bytes a protobuf parser refuses)
                              -> INVALID_ARGUMENT naming the message type, no
                                 parser text; the rest of a client stream is
                                 read first (automl.common.streams.drain)
    - automl.common.errors.*  -> their code, with rich details (automl.common.status)
    - an error from a downstream gRPC call (automl.common.channels raises it
      as a domain error, status.Downstream) -> passed through unchanged
    - NotImplementedError     -> UNIMPLEMENTED (generated servicer stubs raise it)
    - anything else           -> INTERNAL with the request id; the traceback is logged

    Internal services pass `verifier`: only the suite's own services, with a
    valid credential, may call them, and the tenant in the metadata is
    honoured as automl.common.identity's rules say. The gateway passes
    `authenticate` instead: the tenant then comes from the caller's
    credentials, and a tenant in the metadata is ignored. Health and
    reflection are open to everyone (probes, grpcurl's listing).
    """

    def __init__(
        self, service: str, authenticate: Authenticate | None = None, verifier: Verifier | None = None
    ) -> None:
        self.service = service
        self.authenticate = authenticate
        self.verifier = verifier
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if (cached := self._handlers.get(method)) is not None:  # wrapped once per method, not per call
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.response_streaming:
            kind, behavior = (
                ("stream_stream", handler.stream_stream)
                if handler.request_streaming
                else ("unary_stream", handler.unary_stream)
            )
            wrapped: Behavior = self._wrap_streaming(method, _aio(behavior))
        else:
            kind, behavior = (
                ("stream_unary", handler.stream_unary)
                if handler.request_streaming
                else ("unary_unary", handler.unary_unary)
            )
            wrapped = self._wrap_unary(method, _aio(behavior), handler.request_streaming)
        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        self._handlers[method] = factory(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        return self._handlers[method]

    def _authenticator(self, method: str) -> Authenticate | None:
        """What authenticates calls of `method` (health and reflection: nothing)."""
        if method.startswith(_PROBES):
            return None
        if (admit := self._admit(method)) is not None:

            async def admitted(metadata: dict[str, Any], method: str) -> str:
                return admit(metadata)

            return admitted
        return self.authenticate

    def _admit(self, method: str) -> Callable[[dict[str, Any]], str] | None:
        """An internal service's check of a call of `method`, synchronous (it
        computes, it does not wait: no coroutine per call); None elsewhere."""
        if self.verifier is None or method.startswith(_PROBES):
            return None
        verifier = self.verifier

        def admit(metadata: dict[str, Any]) -> str:
            call = _call.get()  # the peer's certificate names, under mutual TLS
            return verifier.admit(metadata, method, call.auth_context() if call and verifier.certificates else None)

        return admit

    def _wrap_unary(self, method: str, behavior: Behavior, request_streaming: bool) -> Behavior:
        admit = self._admit(method)
        authenticate = None if admit is not None else self._authenticator(method)
        done = self._done(method)
        checked = _Checked if request_streaming else _as_it_is  # chosen once, not tested per call

        async def unary(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, metadata = self._enter(ctx)
            code = grpc.StatusCode.OK
            request = checked(request)
            try:
                if admit is not None:
                    context.tenant.set(admit(metadata))
                elif authenticate is not None:
                    context.tenant.set(await authenticate(metadata, method))
                if isinstance(request, _Malformed):
                    raise request.error
                result = behavior(request, ctx)
                return await result if inspect.isawaitable(result) else result
            except BaseException as exc:  # mapped, then re-raised or aborted
                code = await self._fail(ctx, method, _Checked.cause(request, exc))
                raise
            finally:
                done(ctx, started, code)

        return unary

    def _wrap_streaming(self, method: str, behavior: Behavior) -> Behavior:
        authenticate = self._authenticator(method)
        rechecks = _Rechecks.of(authenticate, method)
        done = self._done(method)

        async def streaming(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started, metadata = self._enter(ctx)
            code = grpc.StatusCode.OK
            guard: _Revocation | None = None
            request = _Checked.of(request)
            try:
                if authenticate is not None:
                    context.tenant.set(await authenticate(metadata, method))
                    guard = rechecks.join(metadata) if rechecks is not None else None
                if isinstance(request, _Malformed):
                    raise request.error
                result = behavior(request, ctx)
                if inspect.isawaitable(result):  # a handler that writes with ctx.write()
                    await result
                elif hasattr(result, "__aiter__"):
                    async for message in result:
                        yield message
                else:
                    for message in result:
                        yield message
            except BaseException as exc:  # mapped, then re-raised or aborted
                if guard is not None and guard.refused is not None and isinstance(exc, asyncio.CancelledError):
                    guard.take_back_cancel()
                    await self._fail(ctx, method, guard.refused)  # aborts with the refusal: raises
                code = await self._fail(ctx, method, _Checked.cause(request, exc))
                raise
            finally:
                if guard is not None:
                    guard.stop()
                done(ctx, started, code)

        return streaming

    def _enter(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> tuple[float, dict[str, Any]]:
        """The call's start time and metadata; the request id and tenant set."""
        metadata = dict(ctx.invocation_metadata() or ())
        context.request_id.set(str(metadata.get(context.REQUEST_ID_KEY) or "") or context.new_request_id())
        context.tenant.set("")  # until the caller is admitted
        _call.set(ctx)
        return time.perf_counter(), metadata

    async def _fail(self, ctx: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> grpc.StatusCode:
        """Abort the call with the status `exc` maps to; return that code.

        ctx.abort* raises grpc.aio.AbortError, which the caller's `raise` then
        replaces; either way the status sent is the one set here."""
        rid = context.request_id.get()
        if isinstance(exc, grpc.aio.AbortError):  # the handler aborted by itself
            return _code(ctx) or grpc.StatusCode.UNKNOWN
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            return grpc.StatusCode.CANCELLED
        # Before AutoMLError: a downstream service's answer (status.Downstream,
        # a domain error too) is passed on as it came, not rebuilt.
        if isinstance(exc, grpc.aio.AioRpcError):
            trailing = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if k == "grpc-status-details-bin")
            await _abort(ctx, _Status(exc.code(), exc.details() or "", trailing))
        if isinstance(exc, errors.AutoMLError):
            await _abort(ctx, _with_retry_delay(status.to_status(exc, rid), getattr(exc, "retry_after_seconds", 0.0)))
        if isinstance(exc, NotImplementedError):
            name = method.rsplit("/", 1)[-1]
            message = str(exc) if str(exc) and str(exc) != "Method not implemented!" else ""
            error = errors.Unimplemented(message or f"{name} is not implemented yet in this version of the suite")
            await _abort(ctx, status.to_status(error, rid))
        log.error("unexpected error in %s", method, exc_info=exc)
        await _abort(ctx, status.internal_status(rid))
        return grpc.StatusCode.INTERNAL  # not reached: _abort raises

    def _done(self, method: str) -> Callable[[grpc.aio.ServicerContext[Any, Any], float, grpc.StatusCode], None]:
        """What ends each call of `method`: its metrics and its access-log line.
        Made once per method: the metric children (by code, as codes come) and
        the log's fixed fields are looked up here, not on every call."""
        service = self.service
        name = method.rsplit("/", 1)[-1]
        latency = RPC_LATENCY.labels(service, name)
        counters: dict[grpc.StatusCode, Any] = {}
        probe = method.startswith(_PROBES)

        def done(ctx: grpc.aio.ServicerContext[Any, Any], started: float, code: grpc.StatusCode) -> None:
            if code is grpc.StatusCode.OK and (set_code := _code(ctx)) not in (None, grpc.StatusCode.OK):
                code = set_code
            elapsed = time.perf_counter() - started
            counter = counters.get(code)
            if counter is None:
                counter = counters[code] = RPC_REQUESTS.labels(service, name, code.name)
            counter.inc()
            latency.observe(elapsed)
            level = logging.DEBUG if probe else logging.INFO if code in _QUIET_CODES else logging.WARNING
            if log.isEnabledFor(level):
                fields = {"method": method, "code": code.name, "ms": round(elapsed * 1000, 2)}
                logs.access_line(log, level, "rpc", fields)

        return done


_call: contextvars.ContextVar[grpc.aio.ServicerContext[Any, Any] | None] = contextvars.ContextVar("call", default=None)
"""The call being served (its handler's task has a context of its own)."""


def peer() -> str:
    """The transport address of the call being served, as gRPC gives it
    ("ipv4:203.0.113.7:50312", "unix:"): for an authenticator that limits
    callers by address (gateway.auth). Read from the call when asked, not
    stored on every call of every service."""
    call = _call.get()
    return (call.peer() or "") if call is not None else ""


class _Rechecks:
    """The credentials of one method's open streams, checked again every
    recheck_seconds: once per credential, however many streams use it. A
    thousand watchers of one API key are one check per period, not a
    thousand timers firing together in the middle of an event's fan-out. A
    refusal ends every stream of the credential."""

    def __init__(self, recheck: Authenticate, period: float, method: str) -> None:
        self.recheck = recheck
        self.period = period
        self.method = method
        self.credentials: dict[str, _Credential] = {}

    @classmethod
    def of(cls, authenticate: Authenticate | None, method: str) -> _Rechecks | None:
        recheck = getattr(authenticate, "recheck", None)
        period = getattr(authenticate, "recheck_seconds", 0.0)
        if recheck is None or period <= 0:
            return None
        return cls(recheck, period, method)

    def join(self, metadata: dict[str, Any]) -> _Revocation:
        """The stream being served (the current task), rechecked with the others of its credential."""
        key = str(metadata.get("authorization") or "")
        credential = self.credentials.get(key)
        if credential is None:
            credential = self.credentials[key] = _Credential(self, key, metadata)
        guard = _Revocation(credential, asyncio.current_task())
        credential.streams.add(guard)
        return guard


class _Credential:
    """One credential's open streams of a method and the task that rechecks it."""

    def __init__(self, rechecks: _Rechecks, key: str, metadata: dict[str, Any]) -> None:
        self.rechecks = rechecks
        self.key = key
        self.streams: set[_Revocation] = set()
        # A context of its own: not the first stream's (its request id, its call).
        self.task = asyncio.create_task(self._watch(metadata), context=contextvars.Context())

    async def _watch(self, metadata: dict[str, Any]) -> None:
        rechecks = self.rechecks
        while True:
            await asyncio.sleep(rechecks.period)
            context.request_id.set(context.new_request_id())
            try:
                await rechecks.recheck(metadata, rechecks.method)
            except errors.Unauthenticated as exc:
                self._forget()
                for guard in list(self.streams):
                    guard.refuse(exc)
                return
            except errors.AutoMLError:
                continue  # storage cannot say now: the streams go on, the next check decides

    def leave(self, guard: _Revocation) -> None:
        self.streams.discard(guard)
        if not self.streams:
            self._forget()
            self.task.cancel()

    def _forget(self) -> None:
        if self.rechecks.credentials.get(self.key) is self:
            del self.rechecks.credentials[self.key]


class _Revocation:
    """One open stream under its credential's rechecks: when the credential is
    refused, the stream's task (the one that iterates its answers, whatever
    it is waiting for) is cancelled, and then ends with the refusal."""

    def __init__(self, credential: _Credential, stream: asyncio.Task[Any] | None) -> None:
        self.credential = credential
        self.stream = stream
        self.refused: errors.AutoMLError | None = None

    def refuse(self, exc: errors.AutoMLError) -> None:
        self.refused = exc
        if self.stream is not None:
            self.stream.cancel()

    def take_back_cancel(self) -> None:
        """The cancel was ours, not the caller's: the task may await again (to abort)."""
        if self.stream is not None:
            self.stream.uncancel()

    def stop(self) -> None:
        self.credential.leave(self)


class _Malformed:
    """What a request message the parser refuses deserializes to (the
    deserializer does not raise: grpc.aio would answer UNKNOWN with the
    parser's text for a unary request, and the servicer's loop would meet the
    DecodeError of a client stream's message, INTERNAL). The call answers
    `error`, INVALID_ARGUMENT."""

    __slots__ = ("error", "size")

    def __init__(self, error: errors.InvalidArgument, size: int) -> None:
        self.error = error
        self.size = size

    def ByteSize(self) -> int:  # as a message's, for streams.drain
        return self.size


def _aio(behavior: Callable[[Any, grpc.ServicerContext], Any] | None) -> Behavior:
    """A method handler's behavior as grpc.aio calls it: the stubs type a
    handler's fields for the synchronous server, but on a grpc.aio server
    they are called with a grpc.aio.ServicerContext (and may be coroutine
    functions). The field the handler's streaming flags name is set."""
    return cast(Behavior, behavior)


def _code(ctx: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    """The status code set on the call so far: None until the handler (or an
    abort) sets one, although the stubs type ctx.code() as always a code."""
    return cast("grpc.StatusCode | None", ctx.code())


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize` (a message class's FromString), answering a _Malformed
    instead of raising on bytes that are not a valid message."""
    if deserialize is None:
        return None
    cls = getattr(deserialize, "__self__", None)
    name = getattr(getattr(cls, "DESCRIPTOR", None), "full_name", "")
    message = f"the request is not a valid {name} message" if name else "the request is not a valid message"

    def tolerant(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:  # noqa: BLE001 - DecodeError, or any other refusal of the bytes: the client's
            return _Malformed(errors.InvalidArgument(message), len(raw))

    return tolerant


class _Checked:
    """A client stream as its servicer reads it: a malformed message reads the
    rest of the stream (bounded, so that the refusal is the call's status:
    automl.common.streams.drain says why), then raises its INVALID_ARGUMENT,
    at that read and at any later one. `refused` stays set, so that the call
    answers it whatever the servicer made of the error (the gateway forwards
    a stream to storage: grpc cancels that call when its request iterator
    raises, and the servicer sees CancelledError)."""

    def __init__(self, messages: AsyncIterator[Any]) -> None:
        self.messages = messages
        self.refused: errors.InvalidArgument | None = None

    @classmethod
    def of(cls, request: Any) -> Any:
        """A client stream checked; a single request as it is."""
        return cls(request) if hasattr(request, "__anext__") else request

    @staticmethod
    def cause(request: Any, exc: BaseException) -> BaseException:
        """What the call answers for `exc`: a malformed message's refusal when
        the stream had one (not over an abort already sent, nor a cancellation
        of the call itself: the client left)."""
        refused = request.refused if isinstance(request, _Checked) else None
        if refused is None or isinstance(exc, grpc.aio.AbortError) or _being_cancelled():
            return exc
        return refused

    def __aiter__(self) -> _Checked:
        return self

    async def __anext__(self) -> Any:
        if self.refused is not None:
            raise self.refused
        message = await self.messages.__anext__()
        if isinstance(message, _Malformed):
            self.refused = message.error
            await streams.drain(self.messages)
            raise self.refused
        return message


def _as_it_is(request: Any) -> Any:
    return request


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# Health checks and reflection come every few seconds from probes: logged at DEBUG.
_PROBES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_QUIET_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.CANCELLED,
}


class _Status(grpc.Status):
    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _with_retry_delay(st: grpc.Status, seconds: float) -> grpc.Status:
    """`st` with a google.rpc.RetryInfo detail when the error says how long to
    wait (`retry_after_seconds`, e.g. gateway.auth.TooManyFailures): the
    standard hint gRPC clients read, and the HTTP door's Retry-After."""
    if seconds <= 0:
        return st
    trailing = dict(st.trailing_metadata or ())
    rich = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    delay = duration_pb2.Duration(seconds=math.ceil(seconds))
    rich.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(rich)


async def _abort(ctx: grpc.aio.ServicerContext[Any, Any], st: grpc.Status) -> None:
    rid = context.request_id.get()
    trailing = (*(st.trailing_metadata or ()), (context.REQUEST_ID_KEY, rid))
    await ctx.abort(st.code, status.cap_message(st.details or ""), trailing)  # a downstream's too
