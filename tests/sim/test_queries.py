"""Serf queries across simulated clusters: filters, acks and responses, relays, the deadline."""

from __future__ import annotations

from functools import partial

from controlplane.gossip import GossipConfig
from controlplane.membership.queries import QueryAck, QueryDone, QueryReceived, QueryResponse
from controlplane.testing.query_sim import QuerySimCluster
from controlplane.wire.v1 import query_pb2 as wire


def cluster_of(count: int, seed: int = 3, **kwargs: object) -> QuerySimCluster:
    cluster = QuerySimCluster(GossipConfig.local(), seed=seed, **kwargs)
    names = [f"m{i}" for i in range(count)]
    cluster.start(names[0], tags={"role": "web"})
    for index, name in enumerate(names[1:], start=1):
        cluster.start(name, tags={"role": "web" if index % 2 == 0 else "db"}, seeds=[names[0]])
    assert cluster.run_until_true(lambda: cluster.converged(names), timeout=60) is not None
    for name in names:
        cluster.answers[name] = partial(_answer, name)
    return cluster


def _answer(name: str, query: QueryReceived) -> bytes:
    return f"{name}:{query.payload.decode()}".encode()


def acks(cluster: QuerySimCluster, asker: str) -> list[str]:
    return sorted(e.member for e in cluster.effects_of(asker, QueryAck))


def responses(cluster: QuerySimCluster, asker: str) -> dict[str, bytes]:
    found = cluster.effects_of(asker, QueryResponse)
    return {e.member: e.payload for e in found}


def test_a_tag_filtered_query_reaches_exactly_the_matching_members_under_loss() -> None:
    cluster = cluster_of(8, loss=0.05)
    query_id = cluster.ask(
        "m1", "who", b"x", filter_tags={"role": "^web$"}, request_ack=True, relay_factor=2
    )
    cluster.run_for(10)
    web = [f"m{i}" for i in range(0, 8, 2)]
    assert acks(cluster, "m1") == web
    assert responses(cluster, "m1") == {name: f"{name}:x".encode() for name in web}
    for index in range(8):
        got = cluster.effects_of(f"m{index}", QueryReceived)
        assert len(got) == (1 if index % 2 == 0 else 0), index
    done = cluster.effects_of("m1", QueryDone)
    assert done == [QueryDone(query_id, 4, 4)]


def test_node_filter_and_the_asker_itself() -> None:
    cluster = cluster_of(5)
    cluster.ask("m0", "who", b"y", filter_nodes=["m0", "m3"], request_ack=True)
    cluster.run_for(10)
    assert acks(cluster, "m0") == ["m0", "m3"]
    assert sorted(responses(cluster, "m0")) == ["m0", "m3"]


def test_relays_carry_answers_when_the_direct_path_to_the_asker_is_lost() -> None:
    cluster = cluster_of(6)
    cluster.cut_direct("m2", "m0")
    cluster.ask("m0", "who", b"z", filter_nodes=["m2"], request_ack=True, relay_factor=2)
    cluster.run_for(10)
    assert acks(cluster, "m0") == ["m2"]
    assert responses(cluster, "m0") == {"m2": b"m2:z"}
    assert sum(cluster.queries[name].stats.relayed for name in cluster.queries) >= 2


def test_without_relays_a_lost_direct_path_loses_the_answer() -> None:
    cluster = cluster_of(6)
    cluster.cut_direct("m2", "m0")
    cluster.ask("m0", "who", b"z", filter_nodes=["m2"], request_ack=True)
    cluster.run_for(10)
    assert acks(cluster, "m0") == []
    assert responses(cluster, "m0") == {}


def test_answers_after_the_deadline_are_not_collected() -> None:
    cluster = cluster_of(4, delay=(0.4, 0.5))
    query_id = cluster.ask("m0", "who", b"w", request_ack=True, timeout=0.5)
    cluster.run_for(5)
    # Only the asker's own answers arrive in time: the others take a gossip hop and a
    # datagram of at least 0.4 s each.
    assert acks(cluster, "m0") == ["m0"]
    assert cluster.effects_of("m0", QueryDone) == [QueryDone(query_id, 1, 1)]
    assert cluster.queries["m0"].stats.dropped.get("late_or_unknown", 0) >= 3


def test_a_joining_member_learns_the_query_clock_and_its_queries_are_not_too_old() -> None:
    cluster = cluster_of(3)
    # The cluster's query clock is far ahead of a newcomer's 1: past the query buffer.
    far = wire.QueryMessage(lamport_time=5000, id=1, origin="m1", name="old", timeout_ms=1000)
    cluster.queries["m0"].receive_query(far.SerializeToString(), cluster.now)
    assert cluster.queries["m0"].lamport_time == 5001
    cluster.start("m9", tags={"role": "db"}, seeds=["m0"])
    names = ["m0", "m1", "m2", "m9"]
    assert cluster.run_until_true(lambda: cluster.converged(names), timeout=60) is not None
    assert cluster.queries["m9"].lamport_time >= 5000
    cluster.ask("m9", "who", b"n", filter_nodes=["m0"], request_ack=True, relay_factor=1)
    cluster.run_for(10)
    assert acks(cluster, "m9") == ["m0"]
