"""Calls the standard grpc.health.v1.Health/Check without grpcio-health-checking.

The client distribution must not depend on the agent's packages, and registering
a second copy of grpc/health/v1/health.proto in protobuf's default descriptor
pool would clash with grpcio-health-checking when both are installed. So the two
messages are declared here in a private descriptor pool: same wire format, no
shared registry.
"""

from __future__ import annotations

import enum
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_CHECK_METHOD = "/grpc.health.v1.Health/Check"


def _health_messages() -> tuple[type[Any], type[Any]]:
    file = descriptor_pb2.FileDescriptorProto(
        name="controlplane/client/private/grpc_health_v1.proto",
        package="grpc.health.v1",
        syntax="proto3",
    )
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(
        name="service",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    response = file.message_type.add(name="HealthCheckResponse")
    response.field.add(
        name="status",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    status_enum = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        status_enum.value.add(name=name, number=number)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")
        ),
    )


_Request, _Response = _health_messages()


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


class HealthStatus(enum.IntEnum):
    """grpc.health.v1 serving status."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


def check_health(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> HealthStatus:
    """Health/Check on a blocking channel; raises grpc.RpcError on failure."""
    call: grpc.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        _CHECK_METHOD,
        request_serializer=_serialize,
        response_deserializer=_Response.FromString,
    )
    response = call(_Request(service=service), timeout=timeout)
    return HealthStatus(response.status)


async def check_health_async(
    channel: grpc.aio.Channel, service: str = "", timeout: float = 5.0
) -> HealthStatus:
    """Health/Check on an asyncio channel; raises grpc.aio.AioRpcError on failure."""
    call: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        _CHECK_METHOD,
        request_serializer=_serialize,
        response_deserializer=_Response.FromString,
    )
    response = await call(_Request(service=service), timeout=timeout)
    return HealthStatus(response.status)
