"""controlplane/shell/attend.py: streams to the next members in name order, and a
probe out of turn when one closes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from controlplane.api.services import GOSSIP
from controlplane.membership import EventType, MemberEvent, MemberInfo, MemberStatus
from controlplane.shell.attend import Attendance, AttendServer
from controlplane.shell.pushpull import GossipServicer, PushPullClient
from controlplane.testing.agents import free_port
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

HOST = "127.0.0.1"


def members_here(name: str) -> bool:
    """The attended agent's view: every member alive."""
    return True


def event(kind: EventType, status: MemberStatus, *members: tuple[str, int]) -> MemberEvent:
    infos = tuple(MemberInfo(name, (HOST, port), {}, status, 1) for name, port in members)
    return MemberEvent(kind, infos)


def joined(*members: tuple[str, int]) -> MemberEvent:
    return event(EventType.MEMBER_JOIN, MemberStatus.ALIVE, *members)


def failed(*members: tuple[str, int]) -> MemberEvent:
    return event(EventType.MEMBER_FAILED, MemberStatus.FAILED, *members)


async def serve(attend: AttendServer | None) -> tuple[grpc.aio.Server, int]:
    """A gossip service on loopback; without `attend`, one that does not serve Attend."""
    server = grpc.aio.server()
    port = server.add_insecure_port(f"{HOST}:{free_port(HOST)}")

    async def push_pull(_source: tuple[str, int], frame: bytes) -> bytes:
        return frame

    if attend is not None:
        GOSSIP.add_to_server(GossipServicer(push_pull, attend), server, None)
    else:
        # The service with none of its methods: every call answers UNIMPLEMENTED.
        service = gossip_pb2.DESCRIPTOR.services_by_name["Gossip"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {}),))
    await server.start()
    return server, port


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_next_members_in_name_order_are_attended_wrapping_around() -> None:
    closed_port = free_port(HOST)
    attendance = Attendance("c", PushPullClient().open_channel, lambda name: None)
    try:
        attendance.on_member_event(joined(("a", closed_port), ("b", closed_port)))
        assert attendance.attended == ["a", "b"]
        attendance.on_member_event(joined(("d", closed_port), ("e", closed_port)))
        assert attendance.attended == ["d", "e"]
        attendance.on_member_event(failed(("d", closed_port)))
        assert attendance.attended == ["e", "a"]
    finally:
        await attendance.close()


async def test_a_closed_stream_probes_its_member_at_once() -> None:
    attend = AttendServer(members_here)
    server, port = await serve(attend)
    probed: list[str] = []
    attendance = Attendance("a", PushPullClient().open_channel, probed.append)
    try:
        attendance.on_member_event(joined(("b", port)))
        await wait_for(lambda: attend.open_streams == 1)
        assert probed == []
        await server.stop(None)  # as a crashed process's connections close
        await wait_for(lambda: probed == ["b"], timeout=5.0)
        assert attendance.hints == 1
    finally:
        await attendance.close()
        await server.stop(None)


async def test_a_member_without_attend_is_left_to_probing() -> None:
    server, port = await serve(None)
    attend_c = AttendServer(members_here)
    server_c, port_c = await serve(attend_c)
    probed: list[str] = []
    attendance = Attendance("a", PushPullClient().open_channel, probed.append, count=1)
    try:
        attendance.on_member_event(joined(("b", port), ("c", port_c)))
        await wait_for(lambda: attendance.attended == [])
        # Not replaced by the next member: among thousands that never attend, an agent
        # must not try them all in turn.
        await asyncio.sleep(0.3)
        assert attendance.attended == []
        assert attend_c.open_streams == 0
        assert probed == []
    finally:
        await attendance.close()
        await server.stop(None)
        await server_c.stop(None)


async def end_code(call: Any) -> grpc.StatusCode:
    """How a stream ended; an accepted Attend stream never ends by itself."""
    try:
        async with asyncio.timeout(10):
            async for _ in call:
                pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    code: grpc.StatusCode = await call.code()
    return code


async def test_an_agent_serves_a_bounded_number_of_attendants() -> None:
    attend = AttendServer(members_here, limit=1)
    server, port = await serve(attend)
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        first = stub.Attend(gossip_pb2.AttendRequest(name="a"))
        await first.initial_metadata()
        second = stub.Attend(gossip_pb2.AttendRequest(name="b"))
        assert await end_code(second) == grpc.StatusCode.RESOURCE_EXHAUSTED
        bad = stub.Attend(gossip_pb2.AttendRequest(name="no spaces"))
        assert await end_code(bad) == grpc.StatusCode.INVALID_ARGUMENT
        attend.release()
        assert await end_code(first) == grpc.StatusCode.OK
    await server.stop(None)


async def test_only_alive_members_may_attend_each_with_two_streams_at_most() -> None:
    known = {"a"}
    attend = AttendServer(known.__contains__)
    server, port = await serve(attend)
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        stranger = stub.Attend(gossip_pb2.AttendRequest(name="stranger"))
        assert await end_code(stranger) == grpc.StatusCode.PERMISSION_DENIED
        held = [stub.Attend(gossip_pb2.AttendRequest(name="a")) for _ in range(2)]
        for call in held:
            await call.initial_metadata()
        assert attend.open_streams == 2
        third = stub.Attend(gossip_pb2.AttendRequest(name="a"))
        assert await end_code(third) == grpc.StatusCode.RESOURCE_EXHAUSTED
        attend.release()
        for call in held:
            assert await end_code(call) == grpc.StatusCode.OK
    await server.stop(None)


async def test_a_member_that_does_not_know_us_yet_is_asked_again_without_probes(
    monkeypatch,
) -> None:
    monkeypatch.setattr("controlplane.shell.attend.RETRY_PAUSE", 0.05)
    known: set[str] = set()  # b has not learned of a yet
    attend = AttendServer(known.__contains__)
    server, port = await serve(attend)
    probed: list[str] = []
    attendance = Attendance("a", PushPullClient().open_channel, probed.append)
    try:
        attendance.on_member_event(joined(("b", port)))
        await asyncio.sleep(0.3)
        assert attend.open_streams == 0
        known.add("a")  # now it has
        await wait_for(lambda: attend.open_streams == 1)
        assert attendance.attended == ["b"]
        assert probed == []
    finally:
        await attendance.close()
        await server.stop(None)


async def test_a_member_that_cannot_be_reached_is_retried_ever_more_slowly(monkeypatch) -> None:
    # A failed call also yields (empty) initial metadata: only the agent's header may
    # count as a held stream, or the pause would never grow.
    monkeypatch.setattr("controlplane.shell.attend.RETRY_PAUSE", 0.05)
    probed: list[str] = []
    attendance = Attendance("a", PushPullClient().open_channel, probed.append)
    try:
        attendance.on_member_event(joined(("b", free_port(HOST))))
        await asyncio.sleep(0.6)
        # At 0, 0.05, 0.15, 0.35 s (then 0.75): a fixed pause would give about a dozen.
        assert 1 <= len(probed) <= 5, probed
    finally:
        await attendance.close()


async def test_a_member_that_moved_is_attended_at_its_new_address() -> None:
    old, new = AttendServer(members_here), AttendServer(members_here)
    old_server, old_port = await serve(old)
    new_server, new_port = await serve(new)
    probed: list[str] = []
    attendance = Attendance("a", PushPullClient().open_channel, probed.append)
    try:
        attendance.on_member_event(joined(("b", old_port)))
        await wait_for(lambda: old.open_streams == 1)
        attendance.on_member_event(
            event(EventType.MEMBER_UPDATE, MemberStatus.ALIVE, ("b", new_port))
        )
        await wait_for(lambda: new.open_streams == 1 and old.open_streams == 0)
        assert probed == []  # moving is not a reason to probe
    finally:
        await attendance.close()
        await old_server.stop(None)
        await new_server.stop(None)
