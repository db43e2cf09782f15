"""HTTP/JSON access to the public API, transcoded from the protos' HTTP rules.

Every method of automl.v1.AutoML carries a google.api.http rule (path,
verb, body). At start the gateway reads the rules from the service
descriptor and serves each one; nothing here is written per method, so an
RPC added to the proto with a rule is reachable over HTTP at once (a test
walks the descriptor).

One code path: an HTTP request becomes the gRPC request and is passed to
the gateway's own gRPC methods, so it passes the same interceptor chain
(API key, tenant, request id, logs, metrics, error map) and the same
servicer (validation, forwarding, the cache of answers that no longer
change) as a gRPC call. Unary methods and server streams are called
in-process (gateway.inprocess: the handlers the gRPC server runs, wrapped by
the same chain); client streams (uploads, predictStream) go to the gateway's
gRPC server over a local socket. Each call names the client address the
door served, for the limit on failed key checks (gateway.auth), which
believes it from the door alone. What the transcoder adds is the mapping of
the proto3 JSON form, and of the shapes plain HTTP clients expect:

- unary calls answer JSON; GETs carry an ETag and answer 304 to a matching
  If-None-Match (cacheable, revalidated; an answer the gateway keeps, such
  as an ended run's, is revalidated without reaching storage);
- answers of at least `Limits.gzip_bytes` are gzipped for a client that
  accepts it (Accept-Encoding), and so are JSON-lines downloads (exports);
  live streams (watch, subscribe) are not, so that each event goes at once;
- server streams answer newline-delimited JSON, or server-sent events with
  "Accept: text/event-stream" (each event's id is the resume position, and
  Last-Event-ID resumes a stream that has an after_sequence field);
- a server stream of `chunk` bytes is a file download (Content-Type and
  Content-Disposition from the stream's first message);
- a client stream of a header and byte chunks takes the file as the raw
  request body (`curl -T file.csv`), streamed through in 1 MiB messages,
  and its header fields as query parameters;
- errors answer the HTTP status of their gRPC code with the google.rpc.Status
  as JSON, field violations included; a RESOURCE_EXHAUSTED that is a size
  limit of the request (ErrorInfo TOO_LARGE, or grpc's message-size refusal)
  answers 413, a quota or a rate 429.

Bodies are bounded before they cost memory (`Limits`): a Content-Length over
the cap, or a body that grows past it, answers 413 before any byte is parsed
and before the API key is checked (that happens in the gRPC call); a JSON
body nested deeper than its cap answers 400.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import math
import re
import urllib.parse
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from automl.common.status import TOO_LARGE, reason
from gateway.auth import CLIENT_ADDRESS_KEY, DOOR_TOKEN_KEY
from gateway.inprocess import LocalError, Methods

Memo = Any  # Callable[[Message], dict | None]: what the door may keep with an answer (gateway.cache)

CHUNK = 1024 * 1024
# https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_VARIABLE = re.compile(r"\{([\w.]+)(?:=([^}]+))?\}")


class HttpError(Exception):
    """A request the transcoder cannot turn into a gRPC request. `status`: the
    HTTP status when it is not the one of `code` (413 for a body too large)."""

    def __init__(self, code: grpc.StatusCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What the HTTP door accepts (settings AUTOML_HTTP_MAX_*)."""

    body_bytes: int
    """Largest body of a JSON method, which is read whole before it is parsed."""
    upload_bytes: int
    """Largest raw body of an upload method, which is streamed through."""
    json_depth: int
    """Deepest nesting of arrays and objects in a JSON body."""
    gzip_bytes: int = 1024
    """Smallest answer gzipped for a client that accepts gzip (0: never)."""


class _CappedBody:
    """A request's body, read through a byte limit: the declared length is
    checked before a byte is read, the bytes received as they come (a chunked
    body declares none, and a client may lie)."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.exceeded = False

    def too_large(self) -> HttpError:
        message = f"the request body is larger than the limit of {self.limit} bytes"
        return HttpError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, status=413)

    def check_declared(self) -> None:
        declared = self.request.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.limit:
            raise self.too_large()

    async def chunks(self) -> AsyncIterator[bytes]:
        received = 0
        async for piece in self.request.stream():
            received += len(piece)
            if received > self.limit:
                self.exceeded = True
                raise self.too_large()
            yield piece

    async def read(self) -> bytes:
        body = bytearray()
        async for piece in self.chunks():
            body += piece
        return bytes(body)


@dataclass(frozen=True)
class Binding:
    """One HTTP rule of one method."""

    method: MethodDescriptor
    verb: str
    template: str
    """The rule's path, e.g. "/v1/{name=runs/*}:watch"."""
    pattern: re.Pattern[str]
    variables: dict[str, str]
    """Regex group -> request field path, e.g. "name" -> "name"."""
    body: str
    """"*" (the whole request), a field name, or "" (no body)."""

    @functools.cached_property
    def path(self) -> str:
        """The gRPC method path, "/automl.v1.AutoML/GetRun"."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @functools.cached_property
    def kind(self) -> str:
        """How the call is shaped: unary, download, server_stream, upload, bidi_upload."""
        if self.method.client_streaming:
            return "bidi_upload" if self.method.server_streaming else "upload"
        if self.method.server_streaming:
            return "download" if _is_download(self.method.output_type) else "server_stream"
        return "unary"


def bindings(service: ServiceDescriptor) -> list[Binding]:
    """The HTTP rules of every method of `service`, additional bindings included."""
    out = []
    for method in service.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for r in (rule, *rule.additional_bindings):
            verb = r.WhichOneof("pattern")
            if verb is None or verb == "custom":
                continue
            template = getattr(r, verb)
            pattern, variables = _compile(template)
            out.append(Binding(method, verb.upper(), template, pattern, variables, r.body))
    return out


def _compile(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    regex, variables, last = "", {}, 0
    for i, match in enumerate(_VARIABLE.finditer(template)):
        regex += re.escape(template[last : match.start()])
        group = f"v{i}"
        variables[group] = match.group(1)
        segments = (match.group(2) or "*").split("/")
        inner = "/".join(".+" if s == "**" else "[^/:]+" if s == "*" else re.escape(s) for s in segments)
        regex += f"(?P<{group}>{inner})"
        last = match.end()
    regex += re.escape(template[last:])
    return re.compile(f"^{regex}$"), variables


class _Download(Protocol):
    """An answer of a download method (_is_download): the file's bytes in `chunk`."""

    chunk: bytes


def _is_download(message: Descriptor) -> bool:
    chunk = message.fields_by_name.get("chunk")
    return chunk is not None and chunk.type == FieldDescriptor.TYPE_BYTES


def _upload_fields(message: Descriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The header (message) and byte-chunk fields of a client stream's request."""
    oneof = message.oneofs[0]
    header = next(f for f in oneof.fields if f.type == FieldDescriptor.TYPE_MESSAGE)
    chunk = next(f for f in oneof.fields if f.type == FieldDescriptor.TYPE_BYTES)
    return header, chunk


# ---------------------------------------------------------------- requests


def _scalar(field: FieldDescriptor, raw: str) -> Any:
    """A query-string value in the proto3 JSON form of its field."""
    try:
        if field.type == FieldDescriptor.TYPE_BOOL:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return float(raw)
        if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
            return int(raw)
    except ValueError:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"{field.name}: {raw!r} is not a valid value") from None
    return raw  # 64-bit ints, strings, enums (by name), bytes (base64), well-known types as JSON strings


def _assign(target: dict[str, Any], message: Descriptor | None, path: str, values: list[str]) -> None:
    """Put a query or path value at `path` ("csv_options.delimiter") in a JSON dict
    (of a `message`; None: no parameter is known)."""
    parts = path.split(".")
    descriptor: Descriptor | None = message
    node = target
    for i, part in enumerate(parts):
        field = descriptor.fields_by_name.get(part) if descriptor else None
        if field is None and descriptor is not None:
            field = next((f for f in descriptor.fields if f.json_name == part), None)
        if field is None:
            raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown parameter {path!r}")
        if i == len(parts) - 1:
            repeated = field.is_repeated
            converted = [_scalar(field, v) for v in values]
            node[field.name] = converted if repeated else converted[-1]
        else:
            inner = field.message_type  # set for a field of TYPE_MESSAGE
            if (
                field.type != FieldDescriptor.TYPE_MESSAGE
                or inner is None
                or inner.full_name.startswith("google.protobuf")
            ):
                raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown parameter {path!r}")
            node = node.setdefault(field.name, {})
            descriptor = inner


def _load_json(raw: bytes, max_depth: int) -> Any:
    """A JSON body, refused (400) when it nests arrays and objects deeper than
    `max_depth`: deeper documents are no request of this API, and past
    Python's recursion limit the parser and the protobuf mapping would fail
    with RecursionError (a 500)."""
    too_deep = HttpError(
        grpc.StatusCode.INVALID_ARGUMENT, f"the body nests arrays and objects deeper than {max_depth} levels"
    )
    try:
        body = json.loads(raw) if raw.strip() else {}
    except RecursionError:
        raise too_deep from None
    except ValueError:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, "the body is not JSON") from None
    # Measured after parsing (C speed, bounded by the recursion limit) without
    # recursion, so the walk itself cannot overflow.
    pending: list[tuple[Any, int]] = [(body, 1)] if isinstance(body, (dict, list)) else []
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > max_depth:
            raise too_deep
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return body


def _parse(payload: dict[str, Any], cls: type[Message]) -> Message:
    try:
        return json_format.ParseDict(payload, cls())
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"the request does not fit its schema: {exc}") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


# -------------------------------------------------------------- responses


def _json(message: Message) -> dict[str, Any]:
    # Every field, defaults included: a curl user sees `"modelsEvaluated": 0`
    # rather than guessing what an absent field means.
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def error_body(code: grpc.StatusCode, message: str, details: bytes | None = None) -> dict[str, Any]:
    """A google.rpc.Status as JSON; its details (field violations, request id) kept."""
    status = (
        status_pb2.Status.FromString(details) if details else status_pb2.Status(code=code.value[0], message=message)
    )
    return {"error": json_format.MessageToDict(status)}


def _error_response(
    code: grpc.StatusCode, message: str, details: bytes | None, request_id: str, status: int | None = None
) -> JSONResponse:
    headers = {"x-request-id": request_id}
    if status is None and code is grpc.StatusCode.RESOURCE_EXHAUSTED and _too_large(message, details):
        status = 413
    if wait := _retry_delay(details):
        headers["retry-after"] = str(wait)
    return JSONResponse(
        error_body(code, message, details),
        status_code=status or HTTP_STATUS.get(code, 500),
        headers=headers,
    )


# What grpc itself says of a message past its channel's limit (AUTOML_MAX_MESSAGE_BYTES).
_MESSAGE_TOO_LARGE = re.compile(r"^(Sent|Received) message larger than max")


def _too_large(message: str, details: bytes | None) -> bool:
    """Whether a RESOURCE_EXHAUSTED is a size limit of the request (413), not
    a quota or a rate (429): the services say so with an ErrorInfo
    (automl.common.status.TOO_LARGE), grpc by its message-size text."""
    return bool(_MESSAGE_TOO_LARGE.match(message)) or reason(details) == TOO_LARGE


def _retry_delay(details: bytes | None) -> int:
    """Whole seconds of a google.rpc.RetryInfo detail (0: none), for Retry-After."""
    if not details:
        return 0
    for detail in status_pb2.Status.FromString(details).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            seconds: float = info.retry_delay.ToTimedelta().total_seconds()  # google.rpc has no type information
            return max(1, math.ceil(seconds))
    return 0


# RFC 5987 attr-char beyond what urllib.parse.quote always keeps (letters, digits, "_.-~").
_ATTR_CHARS = "!#$&+^`|"


def content_disposition(filename: str) -> str:
    """An attachment header for any file name (RFC 6266): `filename` in
    printable ASCII for every client, and when that had to replace
    characters (non-ASCII, quotes, backslashes, controls), the exact name as
    `filename*` in UTF-8 (RFC 5987), which clients that know it prefer.
    Headers are Latin-1 on the wire: a raw "数据.csv" cannot be sent at all."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        header += "; filename*=UTF-8''" + urllib.parse.quote(filename, safe=_ATTR_CHARS)
    return header


GZIP_LEVEL = 5
RECENT_JSON_BYTES = 2048
"""Answers from this size (serialized) are looked up in RecentJson before they
are turned into JSON."""


class RecentJson:
    """What the door made of the last large answers (JSON body, ETag, gzipped
    body), by their message type and serialized bytes. An answer the gateway
    cannot keep (a running run's leaderboard page, which may change) is often
    the same bytes as a moment ago, and what the door makes of it is a
    function of those bytes alone: it is made once (json_format costs 3.8 ms
    for a page of 50 results, the bytes' digest 0.05 ms). Whoever is answered
    from here received the same bytes from the servicer."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._memos: dict[tuple[str, bytes], dict[str, Any]] = {}

    def memo(self, reply: Message) -> dict[str, Any] | None:
        """The dict to keep `reply`'s JSON in (as AnswerCache.memo), or None for a small answer."""
        if reply.ByteSize() < RECENT_JSON_BYTES:
            return None
        key = (reply.DESCRIPTOR.full_name, hashlib.sha256(reply.SerializeToString(deterministic=True)).digest())
        memo = self._memos.pop(key, None)
        if memo is None:
            memo = {}
            while len(self._memos) >= self.max_entries:
                del self._memos[next(iter(self._memos))]  # the least recently used (a dict keeps order)
        self._memos[key] = memo
        return memo


GZIP_DOWNLOADS = frozenset({"application/x-ndjson", "application/json"})
"""Downloads gzipped for a client that accepts it: JSON lines (exports). Not
CSV datasets (large, and often compressed by the client's own tools), nor
workbooks (already zip)."""


def _accepts_gzip(request: Request) -> bool:
    """Whether Accept-Encoding takes gzip (and does not refuse it with q=0)."""
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            return not (params.strip().startswith("q=") and _is_zero(q))
    return False


def _is_zero(q: str) -> bool:
    try:
        return float(q) == 0
    except ValueError:
        return False


def _status_details(error: Any) -> bytes | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return value if isinstance(value, bytes) else None
    return None


def _resume_position(message: Message) -> str:
    """The SSE id of a stream message: the last event's position, if any."""
    batch = getattr(message, "batch", None)
    if batch is None or not message.HasField("batch") or not batch.events:
        return ""
    last = batch.events[-1]
    return str(last.sequence if message.DESCRIPTOR.name == "WatchRunResponse" else last.global_sequence)


# ------------------------------------------------------------- transcoder


class Transcoder:
    """Serves every HTTP rule of `service`: unary methods and server streams
    through `methods` (in-process, the chain included), client streams by
    calling the service at `target` (the gateway's own gRPC server, on a
    local socket; without `methods`, every call goes there). Each call says
    which client address the door served, with `door_token`, which the
    gateway's authentication believes from the door alone (gateway.auth).
    `memo(answer)`: a dict the door may keep its JSON of `answer` in (an
    answer the gateway keeps: gateway.cache), or None."""

    def __init__(
        self,
        service: ServiceDescriptor,
        target: str,
        max_message_bytes: int,
        limits: Limits,
        door_token: str = "",
        methods: Methods | None = None,
        memo: Memo | None = None,
    ) -> None:
        self.service = service
        self.target = target
        self.limits = limits
        self.door_token = door_token
        self.methods = methods
        self.memo = memo or (lambda answer: None)
        self.recent = RecentJson()
        self.options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self.bindings = bindings(service)
        self._by_verb: dict[str, list[Binding]] = {}
        for binding in self.bindings:
            self._by_verb.setdefault(binding.verb, []).append(binding)
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target, options=self.options)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._calls.clear()

    def match(self, verb: str, path: str) -> tuple[Binding, dict[str, str]] | None:
        """The binding of a request and its path values; None if no path matches.
        HttpError(UNIMPLEMENTED -> 405) when the path matches with another verb."""
        for binding in self._by_verb.get("GET" if verb == "HEAD" else verb, ()):
            found = binding.pattern.match(path)
            if found is not None:
                return binding, {binding.variables[g]: v for g, v in found.groupdict().items()}
        allowed = [b.verb for b in self.bindings if b.pattern.match(path) is not None]
        if allowed:
            raise HttpError(grpc.StatusCode.UNIMPLEMENTED, f"use {' or '.join(sorted(set(allowed)))} on {path}")
        return None

    def _call(self, binding: Binding) -> Any:
        method = binding.method
        if method.full_name not in self._calls:
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            kind = (
                ("stream" if method.client_streaming else "unary")
                + "_"
                + ("stream" if method.server_streaming else "unary")
            )
            assert self._channel is not None, "Transcoder.start() opens the channel"
            self._calls[method.full_name] = getattr(self._channel, kind)(
                binding.path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
            )
        return self._calls[method.full_name]

    async def handle(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        try:
            matched = self.match(request.method, request.url.path)
            if matched is None:
                raise HttpError(grpc.StatusCode.NOT_FOUND, f"no API method at {request.method} {request.url.path}")
            binding, path_values = matched
            upload = binding.kind in ("upload", "bidi_upload")
            body = _CappedBody(request, self.limits.upload_bytes if upload else self.limits.body_bytes)
            body.check_declared()  # before the key is checked, which happens in the call
            metadata = [("x-request-id", request_id)]
            if auth := request.headers.get("authorization"):
                metadata.append(("authorization", auth))
            if self.door_token and request.client is not None:
                metadata += [(CLIENT_ADDRESS_KEY, request.client.host), (DOOR_TOKEN_KEY, self.door_token)]
            if upload:
                return await self._upload(binding, request, body, path_values, metadata, request_id)
            message = await self._request(binding, request, body, path_values)
            if binding.kind == "unary":
                if self.methods is not None:
                    reply = await self.methods.unary(binding.path, message, metadata)
                else:
                    reply = await self._call(binding)(message, metadata=metadata, wait_for_ready=True)
                return self._unary_response(request, reply, request_id)
            if self.methods is not None:
                call = self.methods.stream(binding.path, message, metadata)
            else:
                call = self._call(binding)(message, metadata=metadata)
            return await self._stream_response(binding, request, call)
        except HttpError as exc:
            return _error_response(exc.code, exc.message, None, request_id, exc.status)
        except (grpc.aio.AioRpcError, LocalError) as exc:
            return _error_response(exc.code(), exc.details() or "", _status_details(exc), request_id)

    async def _request(
        self, binding: Binding, request: Request, capped: _CappedBody, path_values: dict[str, str]
    ) -> Message:
        descriptor = binding.method.input_type
        payload: dict[str, Any] = {}
        if binding.body:
            body = _load_json(await capped.read(), self.limits.json_depth)
            if not isinstance(body, dict):
                raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, "the body must be a JSON object")
            payload = body if binding.body == "*" else {binding.body: body}
        query: dict[str, Any] = {}
        for key in dict.fromkeys(request.query_params.keys()):
            _assign(query, descriptor, key, request.query_params.getlist(key))
        _merge(payload, query)
        if binding.kind == "server_stream" and (last := request.headers.get("last-event-id")):
            resume = "after_sequence" if "after_sequence" in descriptor.fields_by_name else "after_global_sequence"
            if resume in descriptor.fields_by_name:
                payload[resume] = last
        for path, value in path_values.items():
            _assign(payload, descriptor, path, [value])
        return _parse(payload, message_factory.GetMessageClass(descriptor))

    def _unary_response(self, request: Request, reply: Message, request_id: str) -> Response:
        memo = self.memo(reply)
        if memo is None:
            memo = self.recent.memo(reply)
        if memo is not None and "body" in memo:
            body, etag = memo["body"], memo["etag"]
        else:
            body = json.dumps(_json(reply), separators=(",", ":")).encode()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            if memo is not None:
                memo |= {"body": body, "etag": etag}
        headers = {"x-request-id": request_id}
        gzipped = self.limits.gzip_bytes > 0 and len(body) >= self.limits.gzip_bytes
        if gzipped:
            headers["vary"] = "accept-encoding"
            gzipped = _accepts_gzip(request)
        if request.method in ("GET", "HEAD"):
            # The gzipped answer is another representation: an ETag of its own (RFC 9110 8.8.3).
            gz_etag = etag[:-1] + '-gzip"'
            headers |= {"etag": gz_etag if gzipped else etag, "cache-control": "private, no-cache"}
            if (match := request.headers.get("if-none-match")) and (etag in match or gz_etag in match):
                return Response(status_code=304, headers=headers)
        if gzipped:
            if memo is not None and "gzip" in memo:
                body = memo["gzip"]
            else:
                zipped = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
                if memo is not None:
                    memo["gzip"] = zipped
                body = zipped
            headers["content-encoding"] = "gzip"
        return Response(body, media_type="application/json", headers=headers)

    async def _stream_response(self, binding: Binding, request: Request, call: Any) -> Response:
        """Wait for the first message (so that an error is a proper HTTP status),
        then stream the rest."""
        messages = call.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            call.cancel()
            raise
        if binding.kind == "download":
            return self._download(request, first, messages, call)
        sse = "text/event-stream" in request.headers.get("accept", "")

        async def lines() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield _frame(first, sse)
                async for message in messages:
                    yield _frame(message, sse)
            except (grpc.aio.AioRpcError, LocalError) as exc:
                body = json.dumps(error_body(exc.code(), exc.details() or "", _status_details(exc)))
                yield (f"event: error\ndata: {body}\n\n" if sse else body + "\n").encode()
            finally:
                call.cancel()

        media = "text/event-stream" if sse else "application/x-ndjson"
        return StreamingResponse(lines(), media_type=media, headers={"cache-control": "no-store"})

    def _download(
        self, request: Request, first: _Download | None, messages: AsyncIterator[_Download], call: Any
    ) -> Response:
        content_type = getattr(first, "content_type", "") or "application/octet-stream"
        headers = {}
        if filename := getattr(first, "filename", ""):
            headers["content-disposition"] = content_disposition(filename)
        compress = content_type.split(";")[0].strip() in GZIP_DOWNLOADS and self.limits.gzip_bytes > 0
        if compress:
            headers["vary"] = "accept-encoding"
            compress = _accepts_gzip(request)
            if compress:
                headers["content-encoding"] = "gzip"

        async def chunks() -> AsyncIterator[bytes]:
            zipper = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if compress else None
            try:
                if first is not None:
                    yield zipper.compress(first.chunk) if zipper else first.chunk
                async for message in messages:
                    yield zipper.compress(message.chunk) if zipper else message.chunk
                if zipper is not None:
                    yield zipper.flush()
            finally:
                call.cancel()

        return StreamingResponse(chunks(), media_type=content_type, headers=headers)

    async def _upload(
        self,
        binding: Binding,
        request: Request,
        body: _CappedBody,
        path_values: dict[str, str],
        metadata: list[tuple[str, str]],
        request_id: str,
    ) -> Response:
        descriptor = binding.method.input_type
        header_field, chunk_field = _upload_fields(descriptor)
        header: dict[str, Any] = {}
        for key in dict.fromkeys(request.query_params.keys()):
            _assign(header, header_field.message_type, key, request.query_params.getlist(key))
        payload: dict[str, Any] = {header_field.name: header}
        for path, value in path_values.items():
            _assign(payload, descriptor, path, [value])
        cls = message_factory.GetMessageClass(descriptor)
        first = _parse(payload, cls)

        async def messages() -> AsyncIterator[Message]:
            yield first
            pending = bytearray()
            # Past the limit, body.chunks() raises; grpc then cancels the call,
            # so the service drops what it received (no dataset is stored).
            async for piece in body.chunks():
                pending += piece
                while len(pending) >= CHUNK:
                    yield cls(**{chunk_field.name: bytes(pending[:CHUNK])})
                    del pending[:CHUNK]
            if pending:
                yield cls(**{chunk_field.name: bytes(pending)})

        call = self._call(binding)(messages(), metadata=metadata, wait_for_ready=True)
        # predictStream answers only once its CSV body is complete, so a body
        # past the limit always ends the call before the answer has begun.
        try:
            if binding.kind == "upload":
                return self._unary_response(request, await call, request_id)
            return await self._stream_response(binding, request, call)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            # The call ended because its body went past the limit: say that, not
            # CANCELLED. Any other cancellation is not ours to swallow.
            if body.exceeded and not _being_cancelled():
                raise body.too_large() from None
            raise


def _being_cancelled() -> bool:
    """Whether the current task itself is being cancelled (the client left,
    the server stops), as opposed to a gRPC call it awaits."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _frame(message: Message, sse: bool) -> bytes:
    data = json.dumps(_json(message), separators=(",", ":"))
    if not sse:
        return (data + "\n").encode()
    position = _resume_position(message)
    return (f"id: {position}\n" if position else "").encode() + f"data: {data}\n\n".encode()
