"""Deterministic simulation of Vivaldi coordinates carried on probe acks: two sites
with an injected delay between them; every member's RTT estimates converge on the
injected round trips, and `near` puts the servers of the asker's site first."""

from __future__ import annotations

import random

import pytest

from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.gossip import GossipConfig
from controlplane.membership import MembershipConfig, MemberStatus
from controlplane.pool import Server, nearest_first
from controlplane.testing.membership_sim import MembershipSimCluster

# One-way delay inside a site (the simulator's jitter range) and between sites.
SITE_DELAY = (0.0005, 0.0015)
WAN_ONE_WAY = 0.020
# The round trips the estimates must approach: ~2 ms inside a site, ~42 ms across.
LAN_RTT = 2 * sum(SITE_DELAY) / 2
WAN_RTT = LAN_RTT + 2 * WAN_ONE_WAY


def two_sites(seed: int, config: MembershipConfig | None = None) -> MembershipSimCluster:
    cluster = MembershipSimCluster(GossipConfig.lan(), config, seed=seed, delay=SITE_DELAY)
    names = [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)]
    cluster.start(names[0])
    for name in names[1:]:
        cluster.start(name, seeds=[names[0]])
    cluster.set_link_delay(names[:3], names[3:], WAN_ONE_WAY)
    alive = cluster.run_until_true(
        lambda: all(cluster.all_status(n, {MemberStatus.ALIVE}, names) for n in names),
        timeout=30,
    )
    assert alive is not None
    return cluster


def estimate(cluster: MembershipSimCluster, observer: str, a: str, b: str) -> float:
    coordinates = cluster.layers[observer].coordinates
    assert coordinates is not None
    ca, cb = coordinates.get(a), coordinates.get(b)
    assert ca is not None, (observer, a)
    assert cb is not None, (observer, b)
    return ca.distance_to(cb)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rtt_estimates_converge_on_injected_delays(seed: int) -> None:
    cluster = two_sites(seed)
    cluster.run_for(120)
    names = sorted(cluster.layers)
    for observer in names:
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                rtt = estimate(cluster, observer, a, b)
                if a[0] == b[0]:
                    assert 0.5 * LAN_RTT < rtt < 2 * LAN_RTT, (observer, a, b, rtt)
                else:
                    assert 0.9 * WAN_RTT < rtt < 1.1 * WAN_RTT, (observer, a, b, rtt)
    for layer in cluster.layers.values():
        assert layer.coordinates is not None
        assert layer.coordinates.stats.rejected == {}
        assert layer.coordinates.stats.updates > 0


def test_same_seed_same_coordinates() -> None:
    runs = []
    for _ in range(2):
        cluster = two_sites(5)
        cluster.run_for(30)
        runs.append(
            [estimate(cluster, o, a, b) for o, a, b in (("a0", "a1", "b0"), ("b2", "b1", "a2"))]
        )
    assert runs[0] == runs[1]


def test_disabled_coordinates_send_and_learn_nothing() -> None:
    cluster = two_sites(1, MembershipConfig(disable_coordinates=True))
    cluster.run_for(20)
    assert all(layer.coordinates is None for layer in cluster.layers.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_near_puts_the_servers_of_the_askers_site_first(seed: int) -> None:
    cluster = two_sites(seed)
    cluster.run_for(60)
    servers = [
        Server(name=n, address=f"10.9.0.{i}:7946") for i, n in enumerate(sorted(cluster.layers))
    ]
    random.Random(seed).shuffle(servers)
    for observer in ("a1", "b0"):
        layer = cluster.layers[observer]
        for near, site in (("_agent", observer[0]), ("a2", "a"), ("b2", "b")):
            names = [s.name for s in servers]
            ordered = nearest_first(servers, layer.distances_from(near, names))
            assert {s.name[0] for s in ordered[:3]} == {site}, (observer, near, ordered)


def test_coordinate_of_names_the_field_and_the_reason() -> None:
    cluster = two_sites(1)
    layer = cluster.layers["a0"]
    assert layer.coordinate_of("a0") == layer.coordinates.client.coordinate
    with pytest.raises(NotFound, match="node: no coordinate is known for member 'zz'"):
        layer.coordinate_of("zz")
    with pytest.raises(InvalidArgument, match="node"):
        layer.coordinate_of("bad name")
    with pytest.raises(InvalidArgument, match="near"):
        layer.distances_from("bad name", ["a1"])
    off = two_sites(1, MembershipConfig(disable_coordinates=True)).layers["a0"]
    with pytest.raises(FailedPrecondition, match="disable_coordinates"):
        off.coordinate_of("a0")
    assert off.distances_from("_agent", ["a1"]) == {}
