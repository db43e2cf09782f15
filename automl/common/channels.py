"""Outgoing channels between services: every call carries the caller's
credentials, the current request id and tenant, every unary call has a
deadline, and a call that fails raises the domain error of its status
(automl.common.status.from_rpc_error: errors.NotFound, errors.Unavailable,
...), so that code calling another service catches domain errors, never
status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any

import grpc

from automl.common import context, identity, status
from automl.common.identity import IDENTITY_KEY, Credentials
from automl.common.settings import Settings


class _ForwardContext:
    """Adds the call context to the metadata and a default deadline to unary calls
    (streams run as long as their caller keeps them; callers set their own)."""

    def __init__(self, unary_timeout: float, credentials: Credentials) -> None:
        self.unary_timeout = unary_timeout
        self.credentials = credentials

    def _details(self, details: grpc.aio.ClientCallDetails, unary: bool) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        for key, value in context.outgoing_metadata():
            if not _has(metadata, key):
                metadata.add(key, value)
        if not _has(metadata, IDENTITY_KEY):  # a call may speak for another identity of its process (the supervisor)
            for key, value in self.credentials.metadata():
                metadata.add(key, value)
        timeout = details.timeout if details.timeout is not None or not unary else self.unary_timeout
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    # Each returns the call wrapped (_Translated) so that its failure raises a
    # domain error: one interceptor for both jobs, as each layer of grpc.aio's
    # interception costs every call (a second one cost the gateway 0.08 ms of
    # CPU per forwarded call).
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return _Translated(await continuation(self._details(details, True), request))

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _Translated(await continuation(self._details(details, False), request))

    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return _Translated(await continuation(self._details(details, False), request_iterator))

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return _Translated(await continuation(self._details(details, False), request_iterator))


def _has(metadata: grpc.aio.Metadata, key: str) -> bool:
    """`key in metadata`: the stubs type grpc.aio.Metadata as a collection of
    (key, value) pairs, but its `in` tests keys, as its keys() view does."""
    return key in metadata.keys()  # noqa: SIM118 - `key in metadata` reads as a pair test to mypy


# grpc.aio files each interceptor under the first call kind it implements
# (an if/elif chain), so one object implementing all four would only ever see
# unary-unary calls: one object per kind.
class _ForwardUnaryUnary(_ForwardContext, grpc.aio.UnaryUnaryClientInterceptor):
    pass


class _ForwardUnaryStream(_ForwardContext, grpc.aio.UnaryStreamClientInterceptor):
    pass


class _ForwardStreamUnary(_ForwardContext, grpc.aio.StreamUnaryClientInterceptor):
    pass


class _ForwardStreamStream(_ForwardContext, grpc.aio.StreamStreamClientInterceptor):
    pass


class _Translated:
    """A call as grpc made it, but for its failure: awaiting it or reading its
    answers raises status.from_rpc_error's domain error instead of the
    AioRpcError (which it still is: status.Downstream). The rest (cancel(),
    code(), trailing_metadata(), write()...) is the call's own."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from self._call.__await__())
        except grpc.aio.AioRpcError as exc:
            raise status.from_rpc_error(exc) from None  # the same status: grpc's frames add nothing

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        try:
            async for message in self._call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise status.from_rpc_error(exc) from None

    async def read(self) -> Any:
        try:
            return await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise status.from_rpc_error(exc) from None


# grpc.aio hands on what an interceptor returns as the call only when it is
# one of its call types (else it takes it for the answer itself).
for _kind in (grpc.aio.UnaryUnaryCall, grpc.aio.UnaryStreamCall, grpc.aio.StreamUnaryCall, grpc.aio.StreamStreamCall):
    _kind.register(_Translated)


RECONNECT_BACKOFF_MS = 2000
"""Longest wait between two attempts to reach a service that went away: gRPC's
default grows to 120 s, which left callers UNAVAILABLE long after a restarted
service served again (found by bench/chaos.py)."""


def channel_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    ]


def connect(target: str, settings: Settings, credentials: Credentials, lb_policy: str = "") -> grpc.aio.Channel:
    """An asyncio channel to another service of the suite, whose calls carry
    `credentials` (automl.common.identity). `lb_policy` "round_robin" spreads
    calls over every address the target resolves to."""
    options: list[tuple[str, int | str]] = [
        *channel_options(settings),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ]
    if lb_policy:
        options.append(("grpc.lb_policy_name", lb_policy))
    tls = identity.channel_credentials(settings)
    if tls is not None:
        return grpc.aio.secure_channel(target, tls, options=options, interceptors=interceptors(settings, credentials))
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors(settings, credentials))


def interceptors(settings: Settings, credentials: Credentials) -> list[grpc.aio.ClientInterceptor]:
    """What every asyncio channel to an internal service runs: the credentials,
    the call context and the default deadline; failures as domain errors."""
    return [
        kind(settings.call_timeout_seconds, credentials)
        for kind in (_ForwardUnaryUnary, _ForwardUnaryStream, _ForwardStreamUnary, _ForwardStreamStream)
    ]


class _SyncCredentials(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """The credential metadata on every call of a blocking channel."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata

    def _details(self, details: Any) -> Any:
        given = list(details.metadata or ())
        if not any(key == IDENTITY_KEY for key, _ in given):
            given += self.metadata
        return _Details(details.method, details.timeout, given, details.credentials, details.wait_for_ready)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: Any, metadata: Any, credentials: Any, wait_for_ready: Any) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready


def blocking_channel(
    target: str, credentials: Credentials, who: str = "", tls: grpc.ChannelCredentials | None = None
) -> grpc.Channel:
    """A blocking channel to an internal service whose calls carry
    `credentials` (as `who` when given), over mutual TLS when `tls` is given:
    the admin command's, and tools'."""
    channel = grpc.secure_channel(target, tls) if tls is not None else grpc.insecure_channel(target)
    return grpc.intercept_channel(channel, _SyncCredentials(credentials.metadata(who)))
