"""The Ring service on a real 3-agent cluster: agreement, replication, persistence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.ring import HashRing
from controlplane.testing.agents import AgentProcess, free_port, start_agent, wait_until
from controlplane.v1 import ring_pb2 as pb
from controlplane.v1 import ring_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
KEYS = [f"user:{i}" for i in range(10_000)]


class RingCluster:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.agents: dict[str, AgentProcess] = {}

    def start(self, index: int, *extra: str) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0", *extra]
        if index > 1:
            args += ["--join", f"{HOSTS[0]}:{self.port}"]
        name = f"ring-{index}"
        agent = start_agent(
            name, host=HOSTS[index - 1], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.agents[name] = agent
        return agent


def stub(agent: AgentProcess) -> ring_pb2_grpc.RingStub:
    return ring_pb2_grpc.RingStub(agent.channel())


def listing(agent: AgentProcess, ring: str = "cache") -> pb.ListNodesResponse:
    try:
        return stub(agent).ListNodes(pb.ListNodesRequest(ring=ring), timeout=5)
    except grpc.RpcError:
        return pb.ListNodesResponse()


def owners(agent: AgentProcess, ring: str = "cache", in_flight: int = 500) -> list[str]:
    """GetNode for every key, `in_flight` calls at a time."""
    found: list[str] = []
    with agent.channel() as channel:
        get_node = ring_pb2_grpc.RingStub(channel).GetNode
        for start in range(0, len(KEYS), in_flight):
            futures = [
                get_node.future(pb.GetNodeRequest(ring=ring, key=key), timeout=60)
                for key in KEYS[start : start + in_flight]
            ]
            found.extend(future.result().node.id for future in futures)
    return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RingCluster]:
    group = RingCluster(tmp_path)
    try:
        for index in (1, 2, 3):
            group.start(index, "--tag", "ring=cache", "--tag", f"service_port={11210 + index}")
        yield group
    finally:
        for agent in group.agents.values():
            agent.kill()


def agree(agents: list[AgentProcess], expected_nodes: int) -> bool:
    listings = [listing(agent) for agent in agents]
    checksums = {answer.checksum for answer in listings}
    return len(checksums) == 1 and all(len(a.nodes) == expected_nodes for a in listings)


def test_every_agent_places_every_key_identically(cluster: RingCluster) -> None:
    agents = list(cluster.agents.values())
    assert wait_until(lambda: agree(agents, 3), timeout=30), [listing(a) for a in agents]
    first = owners(agents[0])
    assert len(set(first)) == 3  # every node owns keys
    for agent in agents[1:]:
        assert owners(agent) == first
    # The snapshot is enough to place keys client-side, identically.
    snapshot = stub(agents[0]).GetRing(pb.GetRingRequest(ring="cache"), timeout=5).ring
    local = HashRing({node.id: node.weight for node in snapshot.nodes})
    assert local.checksum == snapshot.checksum
    assert [local.get_node(key) for key in KEYS] == first

    replicas = stub(agents[1]).GetNodes(pb.GetNodesRequest(ring="cache", key="k", count=2))
    assert len({n.id for n in replicas.nodes}) == 2
    assert replicas.nodes[0].id == local.get_node("k")


def test_after_a_failure_the_survivors_agree_again(cluster: RingCluster) -> None:
    agents = list(cluster.agents.values())
    assert wait_until(lambda: agree(agents, 3), timeout=30)
    cluster.agents["ring-3"].kill()
    survivors = agents[:2]
    assert wait_until(lambda: agree(survivors, 2), timeout=40), [listing(a) for a in survivors]
    assert owners(survivors[0]) == owners(survivors[1])
    assert "127.0.0.3:11213" not in set(owners(survivors[0]))


def test_registered_nodes_replicate_and_can_be_removed(cluster: RingCluster) -> None:
    agents = list(cluster.agents.values())
    assert wait_until(lambda: agree(agents, 3), timeout=30)
    watch = stub(agents[2]).WatchRing(pb.WatchRingRequest(ring="cache"))
    first_snapshot = next(watch)
    added = stub(agents[0]).AddNode(
        pb.AddNodeRequest(
            ring="cache", address="10.9.0.1", port=6379, weight=2, metadata={"az": "a"}
        ),
        timeout=5,
    )
    assert added.node.id == "10.9.0.1:6379"
    assert added.node.source == pb.RING_NODE_SOURCE_REGISTERED
    assert wait_until(lambda: agree(agents, 4), timeout=20), [listing(a) for a in agents]
    replicated = {n.id: n for n in listing(agents[2]).nodes}["10.9.0.1:6379"]
    assert (replicated.weight, dict(replicated.metadata)) == (2, {"az": "a"})
    newer = next(watch)
    assert newer.ring.version > first_snapshot.ring.version
    assert "10.9.0.1:6379" in {n.id for n in newer.ring.nodes}
    watch.cancel()

    stub(agents[1]).RemoveNode(pb.RemoveNodeRequest(ring="cache", id="10.9.0.1:6379"), timeout=5)
    assert wait_until(lambda: agree(agents, 3), timeout=20)


def test_errors(cluster: RingCluster) -> None:
    ring = stub(cluster.agents["ring-1"])

    def code(call: object, request: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=5)  # type: ignore[operator]
        return raised.value.code()

    assert code(ring.GetNode, pb.GetNodeRequest(ring="empty", key="k")) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert code(ring.GetNode, pb.GetNodeRequest(ring="cache", key="")) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(ring.GetNodes, pb.GetNodesRequest(ring="cache", key="k", count=0)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(ring.RemoveNode, pb.RemoveNodeRequest(ring="cache", id="10.0.0.1:1")) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert code(ring.AddNode, pb.AddNodeRequest(ring="cache", address="h", port=0)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code(
        ring.AddNode, pb.AddNodeRequest(ring="cache", address="h", port=1, weight=1001)
    ) == (grpc.StatusCode.INVALID_ARGUMENT)


def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    group = RingCluster(tmp_path)
    data_dir = tmp_path / "data"
    try:
        agent = group.start(1, "--data-dir", str(data_dir))
        stub(agent).AddNode(
            pb.AddNodeRequest(ring="sessions", address="10.8.0.1", port=9000), timeout=5
        )
        assert agent.terminate() == 0
        restarted = group.start(1, "--data-dir", str(data_dir))
        assert [n.id for n in listing(restarted, "sessions").nodes] == ["10.8.0.1:9000"]
    finally:
        for agent in group.agents.values():
            agent.kill()
