"""Per-call costs cut by reuse: the whole-list ListMembers answer, each client's
heartbeat order, and one guard layer per call. Each reused answer must equal the
one built afresh, and must change as soon as what it was built from changes."""

from __future__ import annotations

import random
from typing import Any, cast

import grpc
import pytest

from controlplane.api.auth import AccessPolicy, configured_tokens
from controlplane.api.errors import guarded_parts
from controlplane.api.heartbeat import HeartbeatRpcs, live_servers, server_proto
from controlplane.api.membership import MembershipService
from controlplane.api.services import SERVER_POOL, OversizedRequest
from controlplane.gossip import codec
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.membership import EventType, MemberEvent, MemberStatus
from controlplane.membership.tags import encode_tags
from controlplane.pool import ApiVersion
from controlplane.v1 import membership_pb2 as mpb
from controlplane.v1 import server_pool_pb2 as pb
from controlplane.v1 import server_pool_pb2_grpc
from tests.property.api.test_server_list_cache import Context, FakeLayer
from tests.unit.api.fake_server import RecordingServer
from tests.unit.api.test_list_paging import NO_CONTEXT, fleet, join
from tests.unit.membership.helpers import datagram


def fresh_service(layer: Any) -> MembershipService:
    return MembershipService(
        layer, cast(Any, None), cast(Any, None), default_port=7946, leave=cast(Any, None)
    )


async def test_the_whole_member_list_is_reused_until_a_member_changes() -> None:
    layer = fleet(5)
    service = fresh_service(layer)
    first = await service.ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)
    again = await service.ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)
    assert again is first
    assert again == await fresh_service(layer).ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)

    join(layer, "newcomer")
    changed = await service.ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)
    assert "newcomer" in [m.name for m in changed.members]
    assert changed == await fresh_service(layer).ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)

    # A member changes (new tags) while the count stays the same.
    update = codec.encode_alive(
        2, "member-00001", ("127.1.0.2", 7946), encode_tags({"role": "changed"})
    )
    layer.receive_packet(("127.1.0.2", 7946), datagram(update), 2.0)
    retagged = await service.ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)
    assert len(retagged.members) == len(changed.members)
    assert {m.name: m.tags["role"] for m in retagged.members}["member-00001"] == "changed"
    assert retagged == await fresh_service(layer).ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)


async def test_filtered_or_paged_lists_are_not_served_from_the_whole_list() -> None:
    layer = fleet(5)
    service = fresh_service(layer)
    await service.ListMembers(mpb.ListMembersRequest(), NO_CONTEXT)
    page = await service.ListMembers(mpb.ListMembersRequest(page_size=2), NO_CONTEXT)
    assert len(page.members) == 2
    assert page.next_page_token
    named = await service.ListMembers(mpb.ListMembersRequest(name_pattern="agent"), NO_CONTEXT)
    assert [m.name for m in named.members] == ["agent"]


def heartbeat_request(client: str) -> pb.HeartbeatRequest:
    return pb.HeartbeatRequest(client_id=client, api_version=pb.ApiVersion(major=1, minor=0))


def expected_order(layer: FakeLayer, client: str) -> list[pb.Server]:
    servers = live_servers(list(layer.infos.values()), ApiVersion(1, 0))
    random.Random(client).shuffle(servers)
    return [server_proto(m) for m in servers]


async def test_each_clients_server_order_is_kept_until_the_servers_change() -> None:
    layer = FakeLayer()
    for index in range(6):
        layer.set(f"s{index}", tags={"role": "server", "api_version": "1.0"})
    rpcs = HeartbeatRpcs(
        cast(Any, layer), HeartbeatTracker(random.Random(0)), lambda: 5.0, lambda: None
    )
    context = cast(Any, Context())
    for client in ("a", "b", "a", "c", "b"):
        answer = rpcs.Heartbeat(heartbeat_request(client), context)
        assert list(answer.servers) == expected_order(layer, client)

    gone = layer.set("s3", status=MemberStatus.FAILED)
    rpcs.on_member_event(MemberEvent(EventType.MEMBER_FAILED, (gone,)))
    for client in ("a", "b"):
        answer = rpcs.Heartbeat(heartbeat_request(client), context)
        assert "s3" not in [s.name for s in answer.servers]
        assert list(answer.servers) == expected_order(layer, client)


def test_a_heartbeat_answer_is_the_response_built_field_by_field() -> None:
    layer = FakeLayer()
    for index in range(4):
        layer.set(f"s{index}", tags={"role": "server", "api_version": "1.0", "dc": "east"})
    leader: list[tuple[str, int] | None] = [None]
    rpcs = HeartbeatRpcs(
        cast(Any, layer), HeartbeatTracker(random.Random(0)), lambda: 5.0, lambda: leader[0]
    )
    # Fed the same heartbeats, a twin tracker hands out the same intervals.
    twin = HeartbeatTracker(random.Random(0))
    context = cast(Any, Context())
    for round_ in range(3):
        answer = rpcs.Heartbeat(heartbeat_request("a"), context)
        expected = pb.HeartbeatResponse(
            servers=expected_order(layer, "a"),
            num_nodes=layer.alive_count(),
            leader_address=leader[0][0] if leader[0] else "",
            leader_epoch=leader[0][1] if leader[0] else 0,
        )
        interval = twin.record("a", "", (1, 0), {}, 5.0)
        expected.heartbeat_interval.FromNanoseconds(round(interval * 1e9))
        assert answer == expected
        assert answer.heartbeat_interval.ToTimedelta().total_seconds() >= 10
        leader[0] = (f"10.0.0.{round_ + 1}:7946", round_ + 7)


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any) -> None:
        self.code = code
        raise _Aborted(details)


class _Pools(server_pool_pb2_grpc.ServerPoolServicer):
    async def FindServer(self, request: pb.FindServerRequest, context: Any) -> Any:
        return pb.FindServerResponse(server=pb.Server(name="a", address="127.0.0.1:1"))


@pytest.fixture
def find_server() -> grpc.RpcMethodHandler[Any, Any]:
    auth = AccessPolicy(tuple(configured_tokens("s3cret-token", ())))
    server = RecordingServer()
    SERVER_POOL.add_to_server(_Pools(), cast(Any, server), auth)  # type: ignore[abstract]  # a partial fake
    handler: grpc.RpcMethodHandler[Any, Any] = server.handler(SERVER_POOL.full_name, "FindServer")
    return handler


async def test_one_guard_checks_the_size_and_the_token_then_runs_the_behavior(
    find_server: grpc.RpcMethodHandler[Any, Any],
) -> None:
    handler = cast(Any, find_server.unary_unary)
    parts = guarded_parts(handler)
    assert parts is not None
    # The behavior itself, not another guard or wrapper: one coroutine layer per call.
    behavior, check = parts
    assert getattr(behavior, "__self__", None).__class__ is _Pools
    assert check is not None

    bearer = (("authorization", "Bearer s3cret-token"),)
    answer = await handler(pb.FindServerRequest(), _Context(bearer))
    assert answer.server.name == "a"

    anonymous = _Context()
    with pytest.raises(_Aborted, match="requires an API token"):
        await handler(pb.FindServerRequest(), anonymous)
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED

    oversized = _Context(bearer)
    with pytest.raises(_Aborted, match="must be at most"):
        await handler(OversizedRequest(5 << 20), oversized)
    assert oversized.code == grpc.StatusCode.RESOURCE_EXHAUSTED
