"""Health/Check on an asyncio channel: the source `tools/unasync.py` turns into
`_health_sync.py`. Import both from `controlplane.client.health`."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from controlplane.client._health_messages import (
    CHECK_METHOD,
    HealthStatus,
    health_messages,
    serialize,
)


async def check_health_async(
    channel: grpc.aio.Channel,
    service: str = "",
    timeout: float = 5.0,
) -> HealthStatus:
    """Health/Check on an asyncio channel; raises grpc.aio.AioRpcError on failure."""
    Request, Response = health_messages()
    call: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
        CHECK_METHOD,
        request_serializer=serialize,
        response_deserializer=Response.FromString,
    )
    response = await call(Request(service=service), timeout=timeout)
    return HealthStatus(response.status)
