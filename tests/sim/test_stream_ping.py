"""memberlist's TCP fallback ping in simulated clusters: a member whose UDP is
filtered (every datagram to and from it lost) while its stream port works stays
alive; one that is down on both paths is declared dead as before."""

from __future__ import annotations

import pytest

from controlplane.gossip import GossipConfig, MemberLeft, NodeStatus
from controlplane.testing.sim import SimCluster

from .test_gossip_cluster import detection_bound

SIZE = 8
FILTERED = "node-0003"


def cluster_with_filtered_member(
    config: GossipConfig, seed: int
) -> tuple[SimCluster, list[tuple[str, str]]]:
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(SIZE)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    failures: list[tuple[str, str]] = []
    cluster.listeners.append(
        lambda _t, observer, effect: (
            failures.append((observer, effect.member.name))
            if isinstance(effect, MemberLeft) and not effect.left
            else None
        )
    )
    cluster.block_udp(FILTERED)
    return cluster, failures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_member_reached_only_over_its_stream_port_stays_alive(seed):
    cluster, failures = cluster_with_filtered_member(GossipConfig.lan(), seed)
    cluster.run_for(120)
    assert failures == []
    others = [m for m in cluster.running() if m.name != FILTERED]
    # Every probe of it went over the stream, and it kept the others alive the same way.
    assert sum(m.core.stats.stream_pings_answered for m in others) >= 60
    assert cluster.members[FILTERED].core.stats.stream_pings_answered >= 60
    assert all(m.core.stats.suspicions_raised == 0 for m in others)
    assert cluster.all_see(FILTERED, {NodeStatus.ALIVE}, [m.name for m in others])


def test_without_tcp_pings_the_filtered_member_is_declared_dead():
    # memberlist with DisableTcpPings: UDP is the only way to answer a probe.
    config = GossipConfig.lan(tcp_pings=False)
    cluster, failures = cluster_with_filtered_member(config, seed=1)
    cluster.run_for(detection_bound(config, SIZE))
    assert {observer for observer, name in failures if name == FILTERED} == {
        m.name for m in cluster.running() if m.name != FILTERED
    }


@pytest.mark.parametrize("fault", ["kill", "partition", "pause"])
def test_a_member_down_on_both_paths_is_declared_dead(fault):
    # Killed: the stream ping is refused at once. Partitioned (a black hole) or paused
    # (a hung process): it hangs until the probe's interval ends, then the member is
    # suspected as memberlist suspects it.
    config = GossipConfig.lan()
    cluster, failures = cluster_with_filtered_member(config, seed=4)
    others = [m.name for m in cluster.running() if m.name != FILTERED]
    if fault == "kill":
        cluster.kill(FILTERED)
    elif fault == "partition":
        cluster.partition([FILTERED], others)
    else:
        cluster.pause(FILTERED)
    cluster.run_for(detection_bound(config, SIZE))
    assert {observer for observer, name in failures if name == FILTERED} == set(others)
    assert sum(cluster.members[name].core.stats.stream_pings_failed for name in others) > 0
