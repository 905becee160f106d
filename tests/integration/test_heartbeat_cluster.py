"""Heartbeat on a real 3-agent cluster: server lists follow joins, leaves and drains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import server_pool_pb2 as pb
from controlplane.v1 import server_pool_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


class Agents:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.agents: list[AgentProcess] = []

    def start(self, index: int, *extra: str) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0", *extra]
        if index > 1:
            args += ["--join", f"{HOSTS[0]}:{self.port}"]
        agent = start_agent(
            f"srv-{index}", host=HOSTS[index - 1], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.agents.append(agent)
        return agent


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    group = Agents(tmp_path)
    try:
        yield group
    finally:
        for agent in group.agents:
            agent.kill()


def heartbeat(agent: AgentProcess, client_id: str = "client-a") -> pb.HeartbeatResponse:
    with agent.channel() as channel:
        stub = server_pool_pb2_grpc.ServerPoolStub(channel)
        return stub.Heartbeat(
            pb.HeartbeatRequest(client_id=client_id, api_version=pb.ApiVersion(major=1)),
            timeout=5,
        )


def server_names(agent: AgentProcess) -> set[str]:
    try:
        return {server.name for server in heartbeat(agent).servers}
    except grpc.RpcError:
        return set()


def test_server_list_follows_joins_and_leaves(agents: Agents) -> None:
    first = agents.start(1)
    agents.start(2)
    third = agents.start(3)
    agents.start(4, "--role", "client")  # a member, never a server
    assert wait_until(lambda: server_names(first) == {"srv-1", "srv-2", "srv-3"}, timeout=30)
    # The client member may reach the first agent after the servers did.
    assert wait_until(lambda: heartbeat(first).num_nodes == 4, timeout=30)
    answer = heartbeat(first)
    assert answer.heartbeat_interval.seconds >= 10
    assert {s.address for s in answer.servers} == {a.target for a in agents.agents[:3]}

    assert third.terminate() == 0
    assert wait_until(lambda: server_names(first) == {"srv-1", "srv-2"}, timeout=20)
    agents.start(3)
    assert wait_until(lambda: server_names(first) == {"srv-1", "srv-2", "srv-3"}, timeout=30)


def test_clients_get_their_own_order_and_are_listed(agents: Agents) -> None:
    first = agents.start(1)
    for index in (2, 3):
        agents.start(index)
    assert wait_until(lambda: len(server_names(first)) == 3, timeout=30)
    orders = {tuple(s.name for s in heartbeat(first, f"client-{i}").servers) for i in range(12)}
    assert len(orders) > 1  # clients spread over the servers
    assert heartbeat(first, "client-0").servers == heartbeat(first, "client-0").servers
    with first.channel() as channel:
        listed = server_pool_pb2_grpc.ServerPoolStub(channel).ListClients(
            pb.ListClientsRequest(), timeout=5
        )
    ids = [client.client_id for client in listed.clients]
    assert ids == sorted(ids)
    assert "client-0" in ids
    assert listed.clients[0].api_version.major == 1


def test_a_draining_agent_leaves_heartbeat_lists_before_it_stops(agents: Agents) -> None:
    first = agents.start(1)
    agents.start(2)
    drainer = agents.start(3, "--drain-period", "4")
    assert wait_until(lambda: len(server_names(first)) == 3, timeout=30)
    drainer.process.send_signal(15)
    # While it drains it is still running, but no longer handed to clients.
    assert wait_until(lambda: server_names(first) == {"srv-1", "srv-2"}, timeout=4)
    assert drainer.process.poll() is None
    assert drainer.process.wait(timeout=30) == 0


def test_bad_heartbeats_are_invalid_argument(agents: Agents) -> None:
    first = agents.start(1)
    with first.channel() as channel:
        stub = server_pool_pb2_grpc.ServerPoolStub(channel)
        with pytest.raises(grpc.RpcError) as empty:
            stub.Heartbeat(pb.HeartbeatRequest(), timeout=5)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "client_id" in (empty.value.details() or "")
        with pytest.raises(grpc.RpcError) as too_many:
            stub.Heartbeat(
                pb.HeartbeatRequest(client_id="c", metadata={f"k{i}": "v" for i in range(17)}),
                timeout=5,
            )
        assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
