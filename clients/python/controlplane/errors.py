"""The one error taxonomy of controlplane, shared by the agent and its clients.

The agent raises these domain errors anywhere in its code; its gRPC edge maps each
to a status code (and `google.rpc` details) exactly once. The client rebuilds the
same classes from the status it receives, so `except controlplane.errors.NotFound`
works on both sides of the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import grpc


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request: which field, and which rule it broke."""

    field: str
    description: str


class ControlPlaneError(Exception):
    """Base of every error controlplane reports; `code` is its gRPC status."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ControlPlaneError):
    """The request is malformed or breaks a documented limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)

    @classmethod
    def for_field(cls, field: str, description: str) -> InvalidArgument:
        """A single-field violation whose message names the field and the rule."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class NotFound(ControlPlaneError):
    """A named member, pool, ring node or key does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ControlPlaneError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ControlPlaneError):
    """The system is not in a state that allows the operation (e.g. an empty ring)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ControlPlaneError):
    """No usable server, the agent is draining, or a peer could not be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ControlPlaneError):
    """A quota or size limit was hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ControlPlaneError):
    """The caller presented no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ControlPlaneError):
    """The caller's credentials do not allow the operation."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(ControlPlaneError):
    """The operation did not finish within its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ControlPlaneError):
    """The RPC exists in the API but this version of the agent does not serve it."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ControlPlaneError):
    """A bug in controlplane; the agent's log has the details."""

    code = grpc.StatusCode.INTERNAL


ERRORS_BY_CODE: dict[grpc.StatusCode, type[ControlPlaneError]] = {
    cls.code: cls
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
