"""The one place that turns domain errors into gRPC statuses (with rich error
details from google.rpc) and back."""

from __future__ import annotations

from typing import Any, Protocol, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from automl.common import errors

CODES: dict[type[errors.AutoMLError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
    errors.Unknown: grpc.StatusCode.UNKNOWN,
}
"""Each domain error's status code and, read backwards (ERRORS), each status
code's domain error: one table for both ways, so that an error that crosses
a service keeps its class. Every code but OK is in it, once."""

ERRORS: dict[grpc.StatusCode, type[errors.AutoMLError]] = {code: cls for cls, code in CODES.items()}
assert len(ERRORS) == len(CODES), "two classes of one code: the way back would pick one"


MAX_MESSAGE_COST = 1500
"""The most a status message may weigh in its grpc-message trailer, where
every byte outside printable ASCII (and "%") is percent-encoded: 3 per
byte, so that 1,500 ASCII characters, or 250 to 500 others. The message
also travels in grpc-status-details-bin (base64, 4/3 of its bytes)."""
MAX_VIOLATIONS = 20
"""Field violations listed in a BadRequest detail; past them, one more says how many were left out."""
MAX_VIOLATION_BYTES = 2000
"""UTF-8 bytes of all listed violations' fields and descriptions together."""
# A gRPC client refuses trailers past 16 KiB, and past 8 KiB (its soft limit,
# grpc.max_metadata_size) it refuses them at random, more often the larger they
# are: the client then sees RESOURCE_EXHAUSTED (HTTP 429) instead of the error.
# Measured with grpcio 1.85: 1,300 "é" (7,800 bytes encoded) 40 of 40 times
# through, 1,500 37 of 40, 2,000 16 of 40. These caps keep every error's
# trailers under about 6.5 KB, whatever it quotes.


def cap_message(message: str, limit: int = MAX_MESSAGE_COST) -> str:
    """`message`, cut (with "… (N more characters)") so that its grpc-message
    trailer weighs at most `limit` bytes."""
    if len(message) <= limit and _weight(message) <= limit:
        return message
    budget = limit - 40  # the suffix: ASCII but for the ellipsis (9 bytes encoded)
    kept = 0
    for position, char in enumerate(message):
        kept += _weight(char)
        if kept > budget:
            return f"{message[:position]}… ({len(message) - position:,} more characters)"
    return message


def _weight(text: str) -> int:
    """Bytes of `text` percent-encoded as grpc-message is."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return len(text)
    return sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode("utf-8", "surrogatepass")) for c in text)


def cap_violations(violations: list[errors.FieldViolation]) -> list[errors.FieldViolation]:
    """At most MAX_VIOLATIONS, of MAX_VIOLATION_BYTES together, then one that
    counts the rest (a list of MAX_VIOLATIONS + 1 passes whole: the gateway's
    rules already end theirs with that count); each field and description cut
    as a message is."""
    out: list[errors.FieldViolation] = []
    left = MAX_VIOLATION_BYTES
    for position, violation in enumerate(violations):
        field = cap_message(violation.field, 200)
        description = cap_message(violation.description, 500)
        size = len(field.encode("utf-8", "surrogatepass")) + len(description.encode("utf-8", "surrogatepass"))
        if (position == MAX_VIOLATIONS and len(violations) > MAX_VIOLATIONS + 1) or size > left:
            out.append(errors.FieldViolation(field, f"and {len(violations) - position} more violations not listed"))
            break
        out.append(errors.FieldViolation(field, description))
        left -= size
    return out


DOMAIN = "automl.v1"
TOO_LARGE = "TOO_LARGE"
"""google.rpc.ErrorInfo reason of a RESOURCE_EXHAUSTED that is a size limit
of the request (errors.ResourceExhausted.too_large), not a quota or a rate."""


def reason(details: bytes | None) -> str:
    """The google.rpc.ErrorInfo reason in a grpc-status-details-bin value ("" if none)."""
    return _reason(status_pb2.Status.FromString(details)) if details else ""


def code_of(error: errors.AutoMLError) -> grpc.StatusCode:
    """`error`'s status code: its class's in CODES (or its nearest base's), else UNKNOWN."""
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.AutoMLError, request_id: str = "") -> grpc.Status:
    """A grpc.Status for `error`, with a BadRequest detail listing field violations
    and a RequestInfo detail carrying the request id; message and violations
    capped (cap_message, cap_violations) so that the trailers always fit."""
    code = code_of(error)
    details: list[any_pb2.Any] = []
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in cap_violations(error.violations)
            ]
        )
        details.append(_pack(bad_request))
    if isinstance(error, errors.ResourceExhausted) and error.too_large:
        details.append(_pack(error_details_pb2.ErrorInfo(reason=TOO_LARGE, domain=DOMAIN)))
    if request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    status = status_pb2.Status(code=code.value[0], message=cap_message(error.message), details=details)
    return rpc_status.to_status(status)


def internal_status(request_id: str) -> grpc.Status:
    """What a caller sees of an unexpected failure: no internals, the id to quote."""
    message = f"internal error; quote request id {request_id} to the operators"
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=message,
        details=[_pack(error_details_pb2.RequestInfo(request_id=request_id))],
    )
    return rpc_status.to_status(status)


def field_violations(call: grpc.Call) -> list[errors.FieldViolation]:
    """The field violations of a failed call's BadRequest detail (empty if none)."""
    return _violations(rpc_status.from_call(call))


class Downstream(grpc.aio.AioRpcError):
    """What a failed call to another service of the suite raises
    (from_rpc_error, applied by automl.common.channels): the domain error of
    its status code (ERRORS) with the message and details the status carried,
    that is also still the grpc.aio.AioRpcError grpc raised, with its code,
    details and trailers. So the CallInterceptor passes it on to its own
    caller exactly as received (the gateway's errors are storage's, byte for
    byte), and code that still catches AioRpcError keeps working."""

    def __init__(self, message: str) -> None:
        # Reached through AutoMLError.__init__'s super() (Downstream follows
        # it in a downstream class's MRO), where AioRpcError's own __init__
        # would want a status: from_rpc_error has given it that already.
        Exception.__init__(self, message)

    def __str__(self) -> str:
        return BaseException.__str__(self)  # the message, as a domain error's; repr() keeps grpc's dump


def _downstream_class(cls: type[errors.AutoMLError]) -> type[errors.AutoMLError]:
    name = cls.__name__
    namespace = {"__module__": __name__, "__qualname__": f"Downstream.{name}", "__doc__": cls.__doc__}
    return cast("type[errors.AutoMLError]", type(name, (cls, Downstream), namespace))


_DOWNSTREAM = {cls: _downstream_class(cls) for cls in CODES}
"""Each domain class's Downstream class (a subclass of both), made once."""


class FailedCall(Protocol):
    """A failed call as grpc raises it, from an asyncio channel or a blocking one."""

    def code(self) -> grpc.StatusCode: ...
    def details(self) -> str | None: ...
    def initial_metadata(self) -> Any: ...
    def trailing_metadata(self) -> Any: ...
    def debug_error_string(self) -> str | None: ...


def from_rpc_error(call: FailedCall) -> errors.AutoMLError:
    """The domain error of a failed call, to_status read backwards: the class
    of its status code (ERRORS) with its message, its field violations
    (BadRequest) and its size-limit reason (ErrorInfo TOO_LARGE); a
    Downstream too, which keeps the status as it came. An error already
    translated is returned as it is."""
    if isinstance(call, errors.AutoMLError):
        return call
    code = call.code()
    cls = ERRORS.get(code, errors.Unknown)
    message = call.details() or ""
    rich = _rich_status(call.trailing_metadata())
    error = _DOWNSTREAM[cls].__new__(_DOWNSTREAM[cls])
    grpc.aio.AioRpcError.__init__(
        cast(grpc.aio.AioRpcError, error),
        code,
        call.initial_metadata(),
        call.trailing_metadata(),
        call.details(),
        call.debug_error_string(),
    )
    # The domain half, as the class's own constructor makes it (Downstream.__init__ ends its chain).
    if issubclass(cls, errors.InvalidArgument):
        cls.__init__(cast(errors.InvalidArgument, error), message, _violations(rich))
    elif issubclass(cls, errors.ResourceExhausted):
        cls.__init__(cast(errors.ResourceExhausted, error), message, too_large=_reason(rich) == TOO_LARGE)
    else:
        cls.__init__(error, message)
    return error


def _rich_status(trailing_metadata: Any) -> status_pb2.Status | None:
    """The google.rpc.Status of a call's grpc-status-details-bin trailer (None if it has none)."""
    for key, value in trailing_metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:  # unreadable details must not hide the status itself
                return None
    return None


def _violations(rich: status_pb2.Status | None) -> list[errors.FieldViolation]:
    violations: list[errors.FieldViolation] = []
    for detail in rich.details if rich is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(errors.FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return violations


def _reason(rich: status_pb2.Status | None) -> str:
    for detail in rich.details if rich is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
            return cast(str, info.reason)  # google.rpc is untyped: ErrorInfo.reason is a string field
    return ""


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
