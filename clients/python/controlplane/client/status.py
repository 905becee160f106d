"""Turns a failed gRPC call into one of the `controlplane.errors` exceptions.

The agent sends a `google.rpc.Status` in the `grpc-status-details-bin` trailer,
with `google.rpc.BadRequest` field violations and a `google.rpc.ErrorInfo`. The
client distribution needs only grpcio and protobuf, and registering
`google/rpc/status.proto` in protobuf's default descriptor pool would clash with
googleapis-common-protos when both are installed, so the three messages are
declared here in a private descriptor pool: same wire format, no shared registry.

This module owns the decoding and the wording of client-side errors: every
message says what happened and what to do about it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from controlplane.errors import (
    ERRORS_BY_ERROR_CODE,
    ControlPlaneError,
    ErrorCode,
    FieldViolation,
    InvalidArgument,
)

__all__ = [
    "ERROR_DOMAIN",
    "STATUS_DETAILS_KEY",
    "DecodedStatus",
    "decode_status_details",
    "encode_status_details",
    "error_code_of",
    "error_from_status",
]

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "controlplane"
_BAD_REQUEST_URL = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo"

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2


def _add_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
) -> None:
    from google.protobuf import descriptor_pb2

    field = descriptor_pb2.FieldDescriptorProto
    added = message.field.add(
        name=name,
        number=number,
        type=kind,
        label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL,
    )
    if type_name:
        added.type_name = type_name


@functools.cache
def _rpc_messages() -> tuple[type[Any], type[Any], type[Any]]:
    """Status, BadRequest and ErrorInfo, declared without google/protobuf/any.proto:
    `Status.details` is read through a private message with Any's two fields. Built on
    first use: building them imports protobuf's descriptor.proto classes (about 3 MB),
    which a process that never sees an error detail does not need."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    _Field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="controlplane/client/private/google_rpc.proto", package="google.rpc", syntax="proto3"
    )
    detail = file.message_type.add(name="PrivateAny")
    _add_field(detail, "type_url", 1, _Field.TYPE_STRING)
    _add_field(detail, "value", 2, _Field.TYPE_BYTES)
    status = file.message_type.add(name="Status")
    _add_field(status, "code", 1, _Field.TYPE_INT32)
    _add_field(status, "message", 2, _Field.TYPE_STRING)
    _add_field(
        status, "details", 3, _Field.TYPE_MESSAGE, repeated=True, type_name=".google.rpc.PrivateAny"
    )
    bad_request = file.message_type.add(name="BadRequest")
    violation = bad_request.nested_type.add(name="FieldViolation")
    _add_field(violation, "field", 1, _Field.TYPE_STRING)
    _add_field(violation, "description", 2, _Field.TYPE_STRING)
    _add_field(
        bad_request,
        "field_violations",
        1,
        _Field.TYPE_MESSAGE,
        repeated=True,
        type_name=".google.rpc.BadRequest.FieldViolation",
    )
    info = file.message_type.add(name="ErrorInfo")
    # ErrorInfo.metadata (field 3, a map) is not needed; protobuf keeps it as unknown.
    _add_field(info, "reason", 1, _Field.TYPE_STRING)
    _add_field(info, "domain", 2, _Field.TYPE_STRING)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)

    def message(name: str) -> type[Any]:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{name}"))

    return message("Status"), message("BadRequest"), message("ErrorInfo")


@dataclass(frozen=True, slots=True)
class DecodedStatus:
    """What the `grpc-status-details-bin` trailer said."""

    code: int
    message: str
    violations: tuple[FieldViolation, ...] = ()
    reason: str = ""
    domain: str = ""


def encode_status_details(
    code: int,
    message: str,
    violations: Sequence[FieldViolation] = (),
    reason: str = "",
    domain: str = ERROR_DOMAIN,
) -> bytes:
    """The trailer value the agent would send (used by tests and fakes)."""
    _Status, _BadRequest, _ErrorInfo = _rpc_messages()
    status = _Status(code=code, message=message)
    if violations:
        bad_request = _BadRequest(
            field_violations=[
                _BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in violations
            ]
        )
        status.details.add(type_url=_BAD_REQUEST_URL, value=bad_request.SerializeToString())
    if reason:
        info = _ErrorInfo(reason=reason, domain=domain)
        status.details.add(type_url=_ERROR_INFO_URL, value=info.SerializeToString())
    return bytes(status.SerializeToString())


def decode_status_details(data: bytes) -> DecodedStatus | None:
    """Parses the trailer; None if it is not a google.rpc.Status."""
    _Status, _BadRequest, _ErrorInfo = _rpc_messages()
    try:
        status = _Status.FromString(data)
        violations: list[FieldViolation] = []
        reason = domain = ""
        for detail in status.details:
            if detail.type_url == _BAD_REQUEST_URL:
                for v in _BadRequest.FromString(detail.value).field_violations:
                    violations.append(FieldViolation(v.field, v.description))
            elif detail.type_url == _ERROR_INFO_URL:
                info = _ErrorInfo.FromString(detail.value)
                reason, domain = info.reason, info.domain
    except Exception:
        return None
    return DecodedStatus(
        code=int(status.code),
        message=str(status.message),
        violations=tuple(violations),
        reason=str(reason),
        domain=str(domain),
    )


def details_from_metadata(
    metadata: Sequence[tuple[str, str | bytes]] | None,
) -> DecodedStatus | None:
    """Finds and decodes the status details among trailing metadata, if present."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return decode_status_details(value)
    return None


# Keyed by the transport-neutral code: error_code_of is this edge's only mapping.
_ADVICE: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "fix the request fields listed in `violations`",
    ErrorCode.NOT_FOUND: "check the name; list what exists first",
    ErrorCode.FAILED_PRECONDITION: "the cluster is not in a state that allows this yet; "
    "retry once it is (for example after nodes join the ring)",
    ErrorCode.UNAVAILABLE: "check that the agents are running and reachable, "
    "and that the client's seeds name them",
    ErrorCode.RESOURCE_EXHAUSTED: "slow down or make the request smaller",
    ErrorCode.UNAUTHENTICATED: "pass valid credentials",
    ErrorCode.PERMISSION_DENIED: "use credentials allowed to do this",
    ErrorCode.DEADLINE_EXCEEDED: "raise the timeout, or check the agents' load and the network",
    ErrorCode.UNIMPLEMENTED: "upgrade the agents, or avoid this call on this version",
    ErrorCode.INTERNAL: "this is a bug; the agent log has details",
}


def error_code_of(code: grpc.StatusCode) -> ErrorCode:
    """The transport-neutral code of a gRPC status code (this edge's one mapping)."""
    return ErrorCode(code.value[0])


def error_from_status(
    code: grpc.StatusCode,
    message: str,
    trailing_metadata: Sequence[tuple[str, str | bytes]] | None = None,
    *,
    method: str = "",
    server: str = "",
) -> ControlPlaneError:
    """The `controlplane.errors` exception for a failed call.

    The class comes from the status code; `InvalidArgument.violations` from the
    `BadRequest` detail. The message keeps the agent's words and adds which call
    failed where and what to do.
    """
    decoded = details_from_metadata(trailing_metadata)
    text = decoded.message if decoded and decoded.message else message
    where = " ".join(part for part in (method, f"on {server}" if server else "") if part)
    error_code = error_code_of(code)
    advice = _ADVICE.get(error_code, "")
    full = f"{where}: {text}" if where else text
    if advice:
        full = f"{full} ({advice})"
    cls = ERRORS_BY_ERROR_CODE.get(error_code)
    error: ControlPlaneError
    if cls is InvalidArgument:
        error = InvalidArgument(full, decoded.violations if decoded else ())
    elif cls is None:
        error = ControlPlaneError(f"{full} [status {error_code.name}]")
    else:
        error = cls(full)
    error.status_message = text
    return error


def error_from_rpc_error(
    error: grpc.RpcError, *, method: str = "", server: str = ""
) -> ControlPlaneError:
    """`error_from_status` for a grpc.RpcError raised by a blocking or asyncio call."""
    code, details, trailers = rpc_error_parts(error)
    return error_from_status(code, details, trailers, method=method, server=server)


def rpc_error_parts(
    error: grpc.RpcError,
) -> tuple[grpc.StatusCode, str, Sequence[tuple[str, str | bytes]] | None]:
    """(code, details, trailing metadata) of a blocking or asyncio RpcError."""
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(error, "details", None)
    details = details_of() if callable(details_of) else str(error)
    trailers_of = getattr(error, "trailing_metadata", None)
    trailers = trailers_of() if callable(trailers_of) else None
    return (
        code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
        str(details or ""),
        tuple(trailers) if trailers else None,
    )


def is_from_agent(trailing_metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
    """True when the agent itself answered with a controlplane error (ErrorInfo
    in domain `controlplane`), as opposed to a transport failure."""
    decoded = details_from_metadata(trailing_metadata)
    return decoded is not None and decoded.domain == ERROR_DOMAIN
