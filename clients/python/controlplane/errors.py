"""The one error taxonomy of controlplane, shared by the agent and its clients.

The agent raises these domain errors anywhere in its code; its gRPC edge maps each
to a status code (and `google.rpc` details) exactly once. The client rebuilds the
same classes from the status it receives, so `except controlplane.errors.NotFound`
works on both sides of the wire.

The taxonomy is transport-neutral: each class names its `ErrorCode`, the canonical
status code (google.rpc.Code), and imports no transport. Mapping to gRPC happens at
the two edges, `controlplane.api.errors` (agent) and `controlplane.client.status`
(client). `ControlPlaneError.code` and `ERRORS_BY_CODE`, which speak
`grpc.StatusCode`, stay for callers that compare with gRPC's codes; they import grpc
only when used.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import grpc


class ErrorCode(enum.IntEnum):
    """The canonical status codes (google.rpc.Code): the same names and numbers as
    gRPC's, with no transport attached."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class _GrpcStatusCode:
    """`ControlPlaneError.code`: the class's `error_code` as a `grpc.StatusCode`,
    with grpc imported on first use rather than by this module."""

    def __get__(self, instance: object, owner: type[ControlPlaneError]) -> grpc.StatusCode:
        import grpc

        return grpc.StatusCode[owner.error_code.name]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request: which field, and which rule it broke."""

    field: str
    description: str


class ControlPlaneError(Exception):
    """Base of every error controlplane reports; `error_code` is its canonical status
    code, `code` the same as a `grpc.StatusCode`."""

    error_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    code: ClassVar[_GrpcStatusCode] = _GrpcStatusCode()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.status_message = ""
        """On the client: the status message exactly as the server sent it (the
        agent's own words); empty for an error the client raised itself, such as
        no server answering."""

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ControlPlaneError):
    """The request is malformed or breaks a documented limit."""

    error_code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)

    @classmethod
    def for_field(cls, field: str, description: str) -> InvalidArgument:
        """A single-field violation whose message names the field and the rule."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class NotFound(ControlPlaneError):
    """A named member, pool, ring node or key does not exist."""

    error_code = ErrorCode.NOT_FOUND


class AlreadyExists(ControlPlaneError):
    """The thing to create exists already."""

    error_code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(ControlPlaneError):
    """The system is not in a state that allows the operation (e.g. an empty ring)."""

    error_code = ErrorCode.FAILED_PRECONDITION


class Unavailable(ControlPlaneError):
    """No usable server, the agent is draining, or a peer could not be reached."""

    error_code = ErrorCode.UNAVAILABLE


class ResourceExhausted(ControlPlaneError):
    """A quota or size limit was hit."""

    error_code = ErrorCode.RESOURCE_EXHAUSTED


class Unauthenticated(ControlPlaneError):
    """The caller presented no valid credentials."""

    error_code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ControlPlaneError):
    """The caller's credentials do not allow the operation."""

    error_code = ErrorCode.PERMISSION_DENIED


class DeadlineExceeded(ControlPlaneError):
    """The operation did not finish within its deadline."""

    error_code = ErrorCode.DEADLINE_EXCEEDED


class Unimplemented(ControlPlaneError):
    """The RPC exists in the API but this version of the agent does not serve it."""

    error_code = ErrorCode.UNIMPLEMENTED


class Internal(ControlPlaneError):
    """A bug in controlplane; the agent's log has the details."""

    error_code = ErrorCode.INTERNAL


ERRORS_BY_ERROR_CODE: dict[ErrorCode, type[ControlPlaneError]] = {
    cls.error_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unavailable,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        Unimplemented,
        Internal,
    )
}


if TYPE_CHECKING:
    ERRORS_BY_CODE: dict[grpc.StatusCode, type[ControlPlaneError]]


def __getattr__(name: str) -> Any:
    # ERRORS_BY_CODE, keyed by grpc.StatusCode, is built on first use so that importing
    # this module never imports grpc.
    if name == "ERRORS_BY_CODE":
        import grpc

        table = {grpc.StatusCode[code.name]: cls for code, cls in ERRORS_BY_ERROR_CODE.items()}
        globals()["ERRORS_BY_CODE"] = table
        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
