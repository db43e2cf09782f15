"""Domain errors: what went wrong, in terms a user can act on.

Domain code raises these and knows nothing of gRPC; automl.common.status maps
each class to its status code in one place, and back: a call to another
service of the suite that fails raises the class of its status code
(automl.common.channels), so that domain code catches these, not status codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field of a request: its path (e.g. "experiment.cv_folds") and the fix."""

    field: str
    description: str


class AutoMLError(Exception):
    """Base of every error a service reports to its caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AutoMLError):
    """The request is wrong; `violations` names each wrong field."""

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """One wrong field; the message is the field and its fix."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])

    @classmethod
    def of(cls, violations: list[FieldViolation]) -> InvalidArgument:
        """Several wrong fields; the message names the first and counts the rest."""
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return cls(f"{first.field}: {first.description}{more}", violations)


class NotFound(AutoMLError):
    """The resource does not exist (or belongs to another tenant)."""


class AlreadyExists(AutoMLError):
    """A resource with that id already exists."""


class FailedPrecondition(AutoMLError):
    """The system is not in a state where the request can run (e.g. a run is active)."""


class OutOfRange(AutoMLError):
    """A position is past what is kept (e.g. events older than the log)."""


class ResourceExhausted(AutoMLError):
    """A quota, a size limit or a capacity was reached. `too_large`: a size
    limit of what the request brings (a file, a line, a column count), which
    a retry cannot pass; the HTTP door answers it 413, the others 429."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class Unauthenticated(AutoMLError):
    """No valid credentials."""


class PermissionDenied(AutoMLError):
    """Credentials are valid but do not allow the call."""


class Unavailable(AutoMLError):
    """A dependency cannot be reached; retrying later may work."""


class DeadlineExceeded(AutoMLError):
    """The call took longer than its deadline; whether it took effect is not known."""


class Aborted(AutoMLError):
    """A concurrent change got in the way (e.g. a transaction conflict); retrying may work."""


class Cancelled(AutoMLError):
    """The caller went away before the call completed."""


class DataLoss(AutoMLError):
    """Bytes were lost or corrupted (e.g. a checksum mismatch)."""


class Unimplemented(AutoMLError):
    """The method exists in the contract but is not built yet."""


class Internal(AutoMLError):
    """Another service failed in a way it does not explain (its INTERNAL answer)."""


class Unknown(AutoMLError):
    """A failure without a status of its own (gRPC's UNKNOWN)."""
