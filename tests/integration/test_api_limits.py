"""Size limits of the public API on a real agent, beside the internal push-pull's.

The public services and the agents' push-pull share one gRPC server whose receive
limit fits a large cluster's push-pull (32 MiB); the public services refuse any
request over 4 MiB themselves, with RESOURCE_EXHAUSTED naming the limit. Field
limits smaller than that still answer INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.errors import InvalidArgument
from controlplane.testing.agents import AgentProcess
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc, server_pool_pb2, server_pool_pb2_grpc
from controlplane.wire.v1 import gossip_pb2, gossip_pb2_grpc

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def channel(agent: AgentProcess) -> Iterator[grpc.Channel]:
    with agent.channel() as channel:
        yield channel


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value


def field_violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field for v in bad_request.field_violations]
    return fields


@pytest.mark.parametrize(
    "request_",
    [
        pb.FireUserEventRequest(name="big", payload=b"x" * (5 * MIB)),
        pb.UpdateTagsRequest(set={"big": "x" * (5 * MIB)}),
    ],
    ids=["FireUserEvent", "UpdateTags"],
)
def test_a_request_over_4_mib_is_resource_exhausted(
    channel: grpc.Channel, request_: object
) -> None:
    stub = membership_pb2_grpc.MembershipStub(channel)
    method = getattr(stub, type(request_).__name__.removesuffix("Request"))
    error = refusal(lambda: method(request_, timeout=10))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4 MiB" in (error.details() or "")
    assert str(4 * MIB) in (error.details() or "")


def test_under_4_mib_the_field_limits_answer(channel: grpc.Channel) -> None:
    stub = membership_pb2_grpc.MembershipStub(channel)
    error = refusal(
        lambda: stub.FireUserEvent(
            pb.FireUserEventRequest(name="big", payload=b"x" * (3 * MIB)), timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "512" in (error.details() or "")
    # The agent is fine afterwards.
    assert stub.GetLocalMember(pb.GetLocalMemberRequest(), timeout=5).member.name == "agent-1"


def test_push_pull_on_the_same_port_still_accepts_more_than_4_mib(channel: grpc.Channel) -> None:
    stub = gossip_pb2_grpc.GossipStub(channel)
    error = refusal(
        lambda: stub.PushPull(gossip_pb2.PushPullRequest(frame=b"\x00" * (6 * MIB)), timeout=10)
    )
    # Received and judged by the push-pull handler (not a state of this cluster),
    # not refused for its size.
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_list_members_validates_paging_and_filters(channel: grpc.Channel) -> None:
    stub = membership_pb2_grpc.MembershipStub(channel)
    cases = [
        (pb.ListMembersRequest(page_size=-1), "page_size"),
        (pb.ListMembersRequest(page_token="not-a-token"), "page_token"),
        (pb.ListMembersRequest(tags={f"k{i}": ".*" for i in range(33)}), "tags"),
        (pb.ListMembersRequest(tags={"k" * 129: ".*"}), "tags"),
    ]
    for request, field in cases:
        error = refusal(lambda request=request: stub.ListMembers(request, timeout=5))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert field_violations(error) == [field]
    page = stub.ListMembers(pb.ListMembersRequest(page_size=5000), timeout=5)
    assert ([m.name for m in page.members], page.next_page_token) == (["agent-1"], "")


def test_list_clients_pages_through_the_heartbeating_clients(channel: grpc.Channel) -> None:
    stub = server_pool_pb2_grpc.ServerPoolStub(channel)
    for index in range(5):
        answer = stub.Heartbeat(
            server_pool_pb2.HeartbeatRequest(
                client_id=f"client-{index}", api_version=server_pool_pb2.ApiVersion(major=1)
            ),
            timeout=5,
        )
        assert [s.name for s in answer.servers] == ["agent-1"]
        assert answer.num_nodes == 1
    ids: list[str] = []
    token = ""
    pages = 0
    while pages < 10:
        page = stub.ListClients(
            server_pool_pb2.ListClientsRequest(page_size=2, page_token=token), timeout=5
        )
        ids += [c.client_id for c in page.clients]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (pages, ids) == (3, [f"client-{i}" for i in range(5)])
    whole = stub.ListClients(server_pool_pb2.ListClientsRequest(), timeout=5)
    assert [c.client_id for c in whole.clients] == ids


def test_a_draining_agent_leaves_its_own_heartbeat_list(channel: grpc.Channel) -> None:
    membership = membership_pb2_grpc.MembershipStub(channel)
    pool = server_pool_pb2_grpc.ServerPoolStub(channel)
    request = server_pool_pb2.HeartbeatRequest(client_id="c")
    assert [s.name for s in pool.Heartbeat(request, timeout=5).servers] == ["agent-1"]
    membership.UpdateTags(pb.UpdateTagsRequest(set={"draining": "true"}), timeout=5)
    assert list(pool.Heartbeat(request, timeout=5).servers) == []
    membership.UpdateTags(pb.UpdateTagsRequest(delete=["draining"]), timeout=5)
    assert [s.name for s in pool.Heartbeat(request, timeout=5).servers] == ["agent-1"]


def test_the_python_clients_page(agent: AgentProcess) -> None:
    with Client([agent.target], ClientOptions(heartbeat=False)) as client:
        for index in range(3):
            client_id = f"paged-{index}"
            with grpc.insecure_channel(agent.target) as channel:
                server_pool_pb2_grpc.ServerPoolStub(channel).Heartbeat(
                    server_pool_pb2.HeartbeatRequest(client_id=client_id), timeout=5
                )
        first = client.list_clients_page(page_size=2)
        rest = client.list_clients_page(page_size=2, page_token=first.next_page_token)
        ids = [c.client_id for c in [*first.clients, *rest.clients]]
        assert (ids, rest.next_page_token) == (["paged-0", "paged-1", "paged-2"], "")
        page = client.members_page(page_size=1, name_pattern="agent-.*")
        assert ([m.name for m in page.members], page.next_page_token) == (["agent-1"], "")
        with pytest.raises(InvalidArgument):
            client.members_page(page_size=-1)
        assert [m.name for m in client.members()] == ["agent-1"]


async def test_the_async_client_pages(agent: AgentProcess) -> None:
    async with AsyncClient([agent.target], ClientOptions(heartbeat=False)) as client:
        page = await client.members_page(page_size=1)
        assert ([m.name for m in page.members], page.next_page_token) == (["agent-1"], "")
        clients = await client.list_clients_page(page_size=5)
        assert clients.next_page_token == ""
