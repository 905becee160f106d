"""Domain errors leave the agent as the right status with google.rpc details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from controlplane.api.services import RING
from controlplane.client.status import error_from_rpc_error
from controlplane.errors import (
    ERRORS_BY_ERROR_CODE,
    ControlPlaneError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from controlplane.v1 import ring_pb2, ring_pb2_grpc

pytestmark = pytest.mark.integration


ERRORS_BY_NAME = {cls.__name__: cls for cls in ERRORS_BY_ERROR_CODE.values()}


class FaultyRing(ring_pb2_grpc.RingServicer):
    async def GetNode(self, request: Any, context: Any) -> Any:
        if request.key == "":
            raise InvalidArgument.for_field("key", "must be 1 to 1024 bytes of UTF-8")
        if request.key == "missing":
            raise NotFound(f"ring {request.ring!r} does not exist")
        if request.key == "crash":
            raise KeyError("bug")
        if request.key.startswith("raise:"):
            raise ERRORS_BY_NAME[request.key.removeprefix("raise:")]("raised on purpose")
        return ring_pb2.GetNodeResponse(version=7)

    async def WatchRing(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield ring_pb2.WatchRingResponse()
        raise Unavailable("agent is draining; reconnect to another agent")


@pytest.fixture
async def stub() -> AsyncIterator[ring_pb2_grpc.RingAsyncStub]:
    server = grpc.aio.server()
    # Registered as the agent registers its servicers: every method guarded once.
    RING.add_to_server(FaultyRing(), server, None)  # type: ignore[abstract]  # a partial fake
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ring_pb2_grpc.RingStub(channel)
    await server.stop(None)


async def test_success_passes_through(stub: Any) -> None:
    assert (await stub.GetNode(ring_pb2.GetNodeRequest(key="k"))).version == 7


async def test_invalid_argument_carries_field_violations(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetNode(ring_pb2.GetNodeRequest(key=""))
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "key: must be 1 to 1024 bytes of UTF-8"
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("key", "must be 1 to 1024 bytes of UTF-8")
    ]


async def test_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetNode(ring_pb2.GetNodeRequest(ring="r", key="missing"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unexpected_exception_is_internal_never_unknown(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetNode(ring_pb2.GetNodeRequest(key="crash"))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = raised.value.details() or ""
    assert "internal error in /controlplane.v1.Ring/GetNode: KeyError" in details


async def test_error_in_a_stream_after_the_first_message(stub: Any) -> None:
    call = stub.WatchRing(ring_pb2.WatchRingRequest())
    assert await call.read() == ring_pb2.WatchRingResponse()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "agent is draining; reconnect to another agent"


@pytest.mark.parametrize("name", sorted(ERRORS_BY_NAME))
async def test_every_error_crosses_the_wire_as_itself(stub: Any, name: str) -> None:
    cls: type[ControlPlaneError] = ERRORS_BY_NAME[name]
    key = "" if cls is InvalidArgument else f"raise:{name}"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetNode(ring_pb2.GetNodeRequest(key=key))
    assert raised.value.code() == grpc.StatusCode[cls.error_code.name]
    received = error_from_rpc_error(raised.value, method="GetNode")
    assert type(received) is cls
    assert received.error_code is cls.error_code
    if isinstance(received, InvalidArgument):
        assert received.violations == (FieldViolation("key", "must be 1 to 1024 bytes of UTF-8"),)
    else:
        assert "raised on purpose" in received.message
