"""An empty grpc.aio RPC server: the baseline bench/rpc.py measures the agent against.

It runs in a process of its own, as the agent does, so the baseline and the
agent pay the same inter-process costs and neither shares the harness's event
loop. Usage: python -m bench.echo_server PORT (or bench/echo_server.py PORT).
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import grpc.aio

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Empty"


def _identity(data: bytes) -> bytes:
    return data


async def _empty(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b""


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Empty": grpc.unary_unary_rpc_method_handler(
                _empty, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
