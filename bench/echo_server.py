"""A bare grpc.aio server answering empty protobuf responses: the baseline that
bench/rpc.py measures the agent against.

It serves every unary RPC of the public services (`controlplane.v1` Membership,
ServerPool and Ring) the way the simplest grpc.aio server would: it parses the
request as its message type and answers the method's response message, empty. So
the Python client calls it through exactly the stack it uses to call an agent
(`AsyncClient`, its failover bookkeeping, the generated stubs, protobuf
decoding), and the difference between the two is what the agent does per call.

It runs in a process of its own, as the agent does, so that the two pay the same
inter-process costs and neither shares the harness's event loop or CPU account.
Usage: python bench/echo_server.py PORT [HOST]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from google.protobuf import message_factory
from google.protobuf.message import Message

from controlplane.v1 import membership_pb2, ring_pb2, server_pool_pb2

SERVICES = (
    membership_pb2.DESCRIPTOR.services_by_name["Membership"],
    server_pool_pb2.DESCRIPTOR.services_by_name["ServerPool"],
    ring_pb2.DESCRIPTOR.services_by_name["Ring"],
)

Handler = Callable[[Message, grpc.aio.ServicerContext[Any, Any]], Coroutine[Any, Any, Message]]


def _empty_answer(response_class: type[Message]) -> Handler:
    async def answer(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        return response_class()

    return answer


def handlers() -> list[grpc.GenericRpcHandler]:
    """One generic handler per public service, answering its unary RPCs empty."""
    generic: list[grpc.GenericRpcHandler] = []
    for service in SERVICES:
        methods = {}
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                _empty_answer(response_class),
                request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString,
            )
        generic.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return generic


async def serve(port: int, host: str = "127.0.0.1") -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(handlers())
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), *sys.argv[2:3]))
