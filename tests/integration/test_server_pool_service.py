"""The ServerPool service: named pools, validation and rebalancing, over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from controlplane.agent import SERVER_OPTIONS
from controlplane.api.server_pool import PoolRegistry, ServerPoolRpcs
from controlplane.api.servicers import ServerPoolServicer
from controlplane.api.services import SERVER_POOL
from controlplane.pool import Server
from controlplane.testing.agents import free_port, running_agent
from controlplane.v1 import server_pool_pb2 as pb
from controlplane.v1 import server_pool_pb2_grpc

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedPinger:
    """Answers pings from a fixed set of live addresses and records the order."""

    def __init__(self, live: set[str]) -> None:
        self.live = live
        self.pinged: list[str] = []

    async def __call__(self, server: Server) -> bool:
        self.pinged.append(server.address)
        return server.address in self.live


def servers(*addresses: str, major: int = 1, minor: int = 0) -> list[pb.Server]:
    return [
        pb.Server(name=f"srv-{a}", address=a, api_version=pb.ApiVersion(major=major, minor=minor))
        for a in addresses
    ]


@pytest.fixture
def pinger() -> ScriptedPinger:
    return ScriptedPinger({"10.0.0.2:7946"})


@pytest.fixture
async def stub(pinger: ScriptedPinger) -> AsyncIterator[Any]:
    registry = PoolRegistry(FakeClock(), pinger=pinger)
    server = grpc.aio.server()
    # Heartbeats are not served in these tests: only the pool RPCs are called.
    servicer = ServerPoolServicer(ServerPoolRpcs(registry), cast(Any, None))
    SERVER_POOL.add_to_server(servicer, server, None)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield server_pool_pb2_grpc.ServerPoolStub(channel)
    await server.stop(None)


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""


async def test_two_named_pools_are_independent(stub: Any) -> None:
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="a", servers=servers("10.0.0.1:7946"))
    )
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="b", servers=servers("10.0.0.9:7946"))
    )
    a = await stub.FindServer(pb.FindServerRequest(pool="a"))
    b = await stub.FindServer(pb.FindServerRequest(pool="b"))
    assert (a.server.address, b.server.address) == ("10.0.0.1:7946", "10.0.0.9:7946")
    await stub.NotifyFailedServer(pb.NotifyFailedServerRequest(pool="a", address="10.0.0.1:7946"))
    assert (await stub.FindServer(pb.FindServerRequest(pool="b"))).server.address == "10.0.0.9:7946"


async def test_empty_pool_name_is_the_default_pool(stub: Any) -> None:
    await stub.RefreshServerLists(pb.RefreshServerListsRequest(servers=servers("10.0.0.1:7946")))
    listed = await stub.ListServers(pb.ListServersRequest(pool="default"))
    assert [s.address for s in listed.primaries] == ["10.0.0.1:7946"]


async def test_notify_failed_rotates_the_head_to_the_end(stub: Any) -> None:
    addresses = ["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"]
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=servers(*addresses))
    )
    head = (await stub.FindServer(pb.FindServerRequest(pool="p"))).server.address
    answer = await stub.NotifyFailedServer(pb.NotifyFailedServerRequest(pool="p", address=head))
    assert answer.rotated
    assert (await stub.FindServer(pb.FindServerRequest(pool="p"))).server.address != head
    listed = await stub.ListServers(pb.ListServersRequest(pool="p"))
    assert listed.primaries[-1].address == head


async def test_rebalance_puts_a_server_that_answers_first(
    stub: Any, pinger: ScriptedPinger
) -> None:
    addresses = [f"10.0.0.{i}:7946" for i in range(1, 6)]
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=servers(*addresses))
    )
    answer = await stub.RebalanceServers(pb.RebalanceServersRequest(pool="p"))
    assert not answer.offline
    assert answer.servers[0].address == "10.0.0.2:7946"
    assert pinger.pinged[-1] == "10.0.0.2:7946"
    assert answer.next_rebalance.seconds >= 120


async def test_rebalance_with_no_answer_is_offline(stub: Any, pinger: ScriptedPinger) -> None:
    pinger.live.clear()
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=servers("10.0.0.7:7946"))
    )
    answer = await stub.RebalanceServers(pb.RebalanceServersRequest(pool="p"))
    assert answer.offline
    assert (await stub.ListServers(pb.ListServersRequest(pool="p"))).offline


async def test_backups_serve_only_without_usable_primaries(stub: Any) -> None:
    await stub.SetBackupServers(
        pb.SetBackupServersRequest(pool="p", servers=servers("10.0.1.1:7946"))
    )
    found = await stub.FindServer(pb.FindServerRequest(pool="p"))
    assert (found.server.address, found.is_backup) == ("10.0.1.1:7946", True)
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=servers("10.0.0.1:7946"))
    )
    found = await stub.FindServer(pb.FindServerRequest(pool="p"))
    assert (found.server.address, found.is_backup) == ("10.0.0.1:7946", False)


async def test_servers_of_another_api_version_are_filtered(stub: Any) -> None:
    request = pb.RefreshServerListsRequest(
        pool="v",
        servers=[
            *servers("10.0.0.1:7946", major=1, minor=0),
            *servers("10.0.0.2:7946", major=2, minor=0),
            *servers("10.0.0.3:7946", major=1, minor=3),
        ],
        api_version=pb.ApiVersion(major=1, minor=2),
    )
    answer = await stub.RefreshServerLists(request)
    assert [s.address for s in answer.servers] == ["10.0.0.1:7946"]
    assert sorted(s.address for s in answer.filtered_out) == ["10.0.0.2:7946", "10.0.0.3:7946"]


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (
            pb.RefreshServerListsRequest(pool="p", servers=[pb.Server(name="x", address="")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "servers[0].address",
        ),
        (
            pb.RefreshServerListsRequest(pool="p", servers=[pb.Server(address="10.0.0.1:70000")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "1..65535",
        ),
        (
            pb.RefreshServerListsRequest(pool="p", leader_address="no-port"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "leader_address",
        ),
        (
            pb.RefreshServerListsRequest(pool="bad name!", servers=[]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pool: must be 1 to 128 characters",
        ),
        (
            pb.RefreshServerListsRequest(
                pool="p", servers=[pb.Server(address=f"10.0.0.1:{i + 1}") for i in range(1025)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 1024 servers",
        ),
    ],
)
async def test_bad_refresh_input(stub: Any, request_: Any, code: Any, needle: str) -> None:
    got, details = await code_of(stub.RefreshServerLists(request_))
    assert got == code
    assert needle in details


async def test_unknown_pool_is_not_found(stub: Any) -> None:
    code, details = await code_of(stub.FindServer(pb.FindServerRequest(pool="nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "pool 'nope' does not exist" in details


async def test_notify_with_empty_or_unknown_address(stub: Any) -> None:
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=servers("10.0.0.1:7946"))
    )
    code, details = await code_of(stub.NotifyFailedServer(pb.NotifyFailedServerRequest(pool="p")))
    assert (code, "address" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, _ = await code_of(
        stub.NotifyFailedServer(pb.NotifyFailedServerRequest(pool="p", address="10.9.9.9:1"))
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_pool_with_no_servers_is_unavailable(stub: Any) -> None:
    await stub.RefreshServerLists(pb.RefreshServerListsRequest(pool="empty"))
    code, details = await code_of(stub.FindServer(pb.FindServerRequest(pool="empty")))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "no usable server" in details


async def test_a_request_over_4_mib_is_refused_on_a_server_that_allows_more() -> None:
    # The agent's server accepts 32 MiB for push-pull; the public service refuses
    # more than 4 MiB itself.
    server = grpc.aio.server(options=SERVER_OPTIONS)
    registry = PoolRegistry(FakeClock(), pinger=ScriptedPinger(set()))
    # Heartbeats are not served in these tests: only the pool RPCs are called.
    servicer = ServerPoolServicer(ServerPoolRpcs(registry), cast(Any, None))
    SERVER_POOL.add_to_server(servicer, server, None)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # 5 MiB of well-formed servers: refused for the request's size, not its content.
    request = pb.RefreshServerListsRequest(
        pool="p",
        servers=[
            pb.Server(name=f"{i:05d}" + "n" * 95, address=f"10.0.{i // 250}.{i % 250}:7946")
            for i in range(40_000)
        ],
    )
    assert request.ByteSize() > 4 * 1024 * 1024
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = server_pool_pb2_grpc.ServerPoolStub(channel)
            code, details = await code_of(stub.RefreshServerLists(request))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "4 MiB" in details
            assert "ServerPool/RefreshServerLists" in details
            # The service still answers requests within the limit.
            del request.servers[1024:]
            answer = await stub.RefreshServerLists(request)
            assert len(answer.servers) == 1024
    finally:
        await server.stop(None)


def test_rebalance_pings_real_agents_with_health_checks(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with (
        running_agent("pool-agent", log_dir=tmp_path) as agent,
        agent.channel() as channel,
    ):
        stub = server_pool_pb2_grpc.ServerPoolStub(channel)
        stub.RefreshServerLists(
            pb.RefreshServerListsRequest(
                pool="real",
                servers=[
                    pb.Server(name="dead", address=dead),
                    pb.Server(name="live", address=agent.target),
                ],
            ),
            timeout=5,
        )
        answer = stub.RebalanceServers(pb.RebalanceServersRequest(pool="real"), timeout=10)
    assert not answer.offline
    assert answer.servers[0].address == agent.target


async def test_add_server_appends_or_updates_in_place_and_remove_server_forgets(
    stub: Any,
) -> None:
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(
            pool="p", servers=servers("10.0.0.1:7946"), num_nodes=7, leader_address="10.0.0.1:7946"
        )
    )
    added = await stub.AddServer(pb.AddServerRequest(pool="p", server=servers("10.0.0.2:7946")[0]))
    assert (added.known, added.incompatible) == (False, False)
    assert [s.address for s in added.servers] == ["10.0.0.1:7946", "10.0.0.2:7946"]
    # The same name at a new address: updated in place, position kept.
    moved = pb.Server(name="srv-10.0.0.1:7946", address="10.0.0.5:7946")
    updated = await stub.AddServer(pb.AddServerRequest(pool="p", server=moved))
    assert updated.known
    assert [s.address for s in updated.servers] == ["10.0.0.5:7946", "10.0.0.2:7946"]
    # Another major version is not added.
    newer = servers("10.0.0.3:7946", major=2)[0]
    refused = await stub.AddServer(pb.AddServerRequest(pool="p", server=newer))
    assert (refused.known, refused.incompatible) == (False, True)
    assert len(refused.servers) == 2
    # A pool that did not exist is created.
    fresh = await stub.AddServer(pb.AddServerRequest(pool="q", server=servers("10.0.9.1:7946")[0]))
    assert [s.address for s in fresh.servers] == ["10.0.9.1:7946"]

    removed = await stub.RemoveServer(pb.RemoveServerRequest(pool="p", address="10.0.0.5:7946"))
    assert (removed.removed, removed.num_servers) == (True, 1)
    again = await stub.RemoveServer(pb.RemoveServerRequest(pool="p", address="10.0.0.5:7946"))
    assert (again.removed, again.num_servers) == (False, 1)
    listed = await stub.ListServers(pb.ListServersRequest(pool="p"))
    assert [s.address for s in listed.primaries] == ["10.0.0.2:7946"]
    # What the last RefreshServerLists carried is shown.
    assert (listed.num_nodes, listed.leader_address) == (7, "10.0.0.1:7946")


async def test_add_and_remove_server_refuse_bad_input_with_the_field(stub: Any) -> None:
    code, details = await code_of(stub.AddServer(pb.AddServerRequest(pool="p")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "server.address" in details
    bad = pb.Server(name="x", address="10.0.0.1:99999")
    code, details = await code_of(stub.AddServer(pb.AddServerRequest(pool="p", server=bad)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "port" in details
    code, details = await code_of(
        stub.AddServer(pb.AddServerRequest(pool="bad name!", server=servers("10.0.0.1:7946")[0]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    await stub.AddServer(pb.AddServerRequest(pool="p", server=servers("10.0.0.1:7946")[0]))
    code, details = await code_of(stub.RemoveServer(pb.RemoveServerRequest(pool="p", address="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "address" in details
    code, _ = await code_of(
        stub.RemoveServer(pb.RemoveServerRequest(pool="nope", address="10.0.0.1:7946"))
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_add_server_refuses_a_primary_beyond_the_list_limit(stub: Any) -> None:
    full = [f"10.{i // 250}.{i % 250}.1:7946" for i in range(1024)]
    await stub.RefreshServerLists(pb.RefreshServerListsRequest(pool="p", servers=servers(*full)))
    code, details = await code_of(
        stub.AddServer(pb.AddServerRequest(pool="p", server=servers("10.99.0.1:7946")[0]))
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1024" in details
    # A known one may still be updated.
    known = pb.Server(name="srv-10.0.0.1:7946", address="10.0.0.1:7946", draining=True)
    assert (await stub.AddServer(pb.AddServerRequest(pool="p", server=known))).known


async def test_a_pool_with_a_datacenter_keeps_other_datacenters_as_backups(stub: Any) -> None:
    local = pb.Server(name="a", address="10.0.0.1:7946", datacenter="dc1")
    remote = pb.Server(name="b", address="10.0.1.1:7946", datacenter="dc2")
    await stub.RefreshServerLists(
        pb.RefreshServerListsRequest(pool="p", servers=[remote, local], datacenter="dc1")
    )
    listed = await stub.ListServers(pb.ListServersRequest(pool="p"))
    assert ([s.name for s in listed.primaries], [s.name for s in listed.backups]) == (["a"], ["b"])
    assert (await stub.FindServer(pb.FindServerRequest(pool="p"))).server.name == "a"
    there = await stub.FindServer(pb.FindServerRequest(pool="p", datacenter="dc2"))
    assert (there.server.name, there.is_backup) == ("b", True)
    code, details = await code_of(stub.FindServer(pb.FindServerRequest(pool="p", datacenter="dc9")))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "datacenter 'dc9'" in details
    code, details = await code_of(
        stub.FindServer(pb.FindServerRequest(pool="p", datacenter="bad dc"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "datacenter" in details
    code, details = await code_of(
        stub.RefreshServerLists(
            pb.RefreshServerListsRequest(pool="p", servers=[local], datacenter="dc2")
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "created for datacenter 'dc1'" in details
