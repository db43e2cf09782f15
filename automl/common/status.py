"""The one place that turns domain errors into gRPC statuses (with rich error
details from google.rpc) and back."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
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
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}


def code_of(error: errors.AutoMLError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.AutoMLError, request_id: str = "") -> grpc.Status:
    """A grpc.Status for `error`, with a BadRequest detail listing field violations
    and a RequestInfo detail carrying the request id."""
    code = code_of(error)
    details: list[any_pb2.Any] = []
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    if request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
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
    status = rpc_status.from_call(call)
    if status is None:
        return []
    violations: list[errors.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(errors.FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return violations


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
