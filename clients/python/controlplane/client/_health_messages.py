"""The messages of grpc.health.v1.Health/Check, without grpcio-health-checking.

The client distribution must not depend on the agent's packages, and registering
a second copy of grpc/health/v1/health.proto in protobuf's default descriptor
pool would clash with grpcio-health-checking when both are installed. So the two
messages are declared here in a private descriptor pool: same wire format, no
shared registry.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

CHECK_METHOD = "/grpc.health.v1.Health/Check"


@functools.cache
def health_messages() -> tuple[type[Any], type[Any]]:
    """(HealthCheckRequest, HealthCheckResponse), built on first use: building them
    imports protobuf's descriptor.proto classes, about 3 MB that an agent without
    pools never needs."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

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


def serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


class HealthStatus(enum.IntEnum):
    """grpc.health.v1 serving status."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3
