"""Subsystem channels over the membership layer: once-only delivery and anti-entropy."""

from __future__ import annotations

from controlplane.gossip import GossipConfig
from controlplane.membership import ChannelDelivery, ChannelStateReceived
from controlplane.testing.membership_sim import MembershipSimCluster


def deliveries(cluster: MembershipSimCluster, name: str) -> list[ChannelDelivery]:
    return [e for e in cluster.channel_events[name] if isinstance(e, ChannelDelivery)]


def test_a_channel_message_reaches_every_other_member_exactly_once_under_loss() -> None:
    cluster = MembershipSimCluster(GossipConfig.local(), seed=11, loss=0.1, duplicate=0.05)
    names = [f"m{i}" for i in range(12)]
    cluster.start(names[0])
    for name in names[1:]:
        cluster.start(name, seeds=[names[0]])
    assert cluster.run_until_true(lambda: cluster.converged(names), timeout=60) is not None
    cluster.send("m3", "ring", b"registration-1")
    cluster.send("m7", "election", b"lease-9")
    cluster.run_for(30)
    for name in names:
        got = sorted((d.channel, d.origin, d.payload) for d in deliveries(cluster, name))
        expected = [("election", "m7", b"lease-9"), ("ring", "m3", b"registration-1")]
        expected = [item for item in expected if item[1] != name]  # not delivered to itself
        assert got == expected, name


def test_channel_state_travels_in_push_pull_to_a_late_joiner() -> None:
    cluster = MembershipSimCluster(GossipConfig.local(), seed=5)
    cluster.start("a")
    cluster.layers["a"].add_channel("ring", lambda: b"state-of-a")
    cluster.start("b", seeds=["a"])
    assert cluster.run_until_true(lambda: cluster.converged(["a", "b"]), timeout=30) is not None
    states = [e for e in cluster.channel_events["b"] if isinstance(e, ChannelStateReceived)]
    assert ChannelStateReceived("ring", b"state-of-a") in states
