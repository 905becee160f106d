"""Deterministic cluster simulations of the gossip core: join, failure detection,
packet loss, partitions, pauses, graceful leave and name reuse."""

from __future__ import annotations

import random
from collections.abc import Callable

from controlplane.gossip import GossipConfig, MemberLeft, NodeStatus, UserMessage
from controlplane.gossip.formulas import retransmit_limit, suspicion_timeout
from controlplane.testing.sim import SimCluster, SimNetwork

ALIVE = {NodeStatus.ALIVE}


def detection_bound(config: GossipConfig, n: int) -> float:
    """Upper bound on kill-to-dead-everywhere for an ``n``-member cluster.

    Detection: the shuffled round-robin reaches a dead member within a few probe
    intervals (each of n-1 members probes it with chance 1/(n-1) per interval), plus
    one interval for the direct and indirect probe. Suspicion: at most the maximum
    Lifeguard timeout (no confirmations). Dissemination: the dead broadcast's full
    transmit budget at one gossip round each.
    """
    detect = 4 * config.probe_interval
    suspect = config.suspicion_max_timeout_mult * suspicion_timeout(
        config.suspicion_mult, n, config.probe_interval
    )
    disseminate = retransmit_limit(config.retransmit_mult, n) * config.gossip_interval
    return detect + suspect + disseminate


def test_fifty_nodes_join_through_one_seed_and_converge():
    cluster = SimCluster(GossipConfig.lan(), seed=7)
    cluster.add_nodes(50)
    took = cluster.run_until_true(cluster.converged, timeout=60)
    assert took is not None
    assert took < 10


def test_killed_node_declared_dead_everywhere_within_bound():
    config = GossipConfig.lan()
    cluster = SimCluster(config, seed=11)
    cluster.add_nodes(50)
    assert cluster.run_until_true(cluster.converged, timeout=60) is not None
    cluster.run_for(5)
    victim = "node-0023"
    cluster.kill(victim)
    live = [m.name for m in cluster.running()]
    bound = detection_bound(config, 50)
    took = cluster.run_until_true(
        lambda: cluster.all_see(victim, {NodeStatus.DEAD}, live), timeout=bound
    )
    assert took is not None, f"not dead everywhere within {bound:.1f}s"
    assert took <= bound
    # No collateral damage.
    for name in live:
        assert all(cluster.view(name, other) is NodeStatus.ALIVE for other in live)


def test_ten_percent_loss_for_ten_minutes_gives_no_false_positive():
    # UDP alone: the stream pings (lossless here, like TCP after its retransmits) would
    # answer every probe whose datagrams were lost, and nothing would be suspected.
    cluster = SimCluster(GossipConfig.lan(tcp_pings=False), seed=3, loss=0.10)
    cluster.add_nodes(20)
    assert cluster.run_until_true(cluster.converged, timeout=60) is not None
    declared: list[str] = []
    cluster.listeners.append(
        lambda _t, _observer, effect: (
            declared.append(effect.member.name) if isinstance(effect, MemberLeft) else None
        )
    )
    cluster.run_for(600)
    assert declared == []
    assert cluster.converged()
    # The loss did raise suspicions (so the test exercises something), and every one
    # of them was refuted in time.
    refutations = sum(m.core.stats.refutations for m in cluster.running())
    assert refutations > 0, "10 % loss raised no suspicion: the scenario tests nothing"


def test_partition_heals_by_itself_through_reconnect():
    cluster = SimCluster(GossipConfig.lan(), seed=5)
    cluster.add_nodes(5)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    left_side = ["node-0000", "node-0001", "node-0002"]
    right_side = ["node-0003", "node-0004"]
    cluster.partition(left_side, right_side)
    cluster.run_for(300)
    # Each side has declared the other dead.
    assert cluster.converged(left_side)
    assert cluster.converged(right_side)
    assert cluster.view("node-0000", "node-0004") is NodeStatus.DEAD
    cluster.heal()
    took = cluster.run_until_true(cluster.converged, timeout=300, step=1.0)
    assert took is not None, "partition did not heal"


def test_paused_node_refutes_on_resume():
    config = GossipConfig.lan()
    cluster = SimCluster(config, seed=9)
    cluster.add_nodes(5)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    victim = "node-0002"
    others = [name for name in cluster.members if name != victim]
    maximum = config.suspicion_max_timeout_mult * suspicion_timeout(
        config.suspicion_mult, 5, config.probe_interval
    )
    cluster.pause(victim)
    took = cluster.run_until_true(
        lambda: cluster.all_see(victim, {NodeStatus.DEAD}, others), timeout=maximum + 20
    )
    assert took is not None
    incarnation_before = cluster.members[victim].core.incarnation
    cluster.resume(victim)
    healed = cluster.run_until_true(cluster.converged, timeout=120)
    assert healed is not None
    assert cluster.members[victim].core.incarnation > incarnation_before
    assert cluster.members[victim].core.stats.refutations >= 1


def test_left_node_is_left_not_dead_and_can_rejoin_with_same_name():
    cluster = SimCluster(GossipConfig.lan(), seed=13)
    cluster.add_nodes(8)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    leaver = "node-0005"
    others = [name for name in cluster.members if name != leaver]
    cluster.leave(leaver)
    cluster.run_for(2)
    cluster.kill(leaver)
    assert (
        cluster.run_until_true(
            lambda: cluster.all_see(leaver, {NodeStatus.LEFT}, others), timeout=10
        )
        is not None
    )
    cluster.run_for(60)
    assert cluster.all_see(leaver, {NodeStatus.LEFT}, others)
    for name in others:
        events = [e for _t, e in cluster.members[name].events if isinstance(e, MemberLeft)]
        assert [(e.member.name, e.left) for e in events] == [(leaver, True)]
    # Restart under the same name and address: it must out-bid its own leave.
    cluster.add_node(leaver, seeds=["node-0000"])
    took = cluster.run_until_true(cluster.converged, timeout=60)
    assert took is not None
    assert cluster.all_see(leaver, ALIVE, others)
    assert cluster.members[leaver].core.incarnation > 1


def test_update_meta_reaches_everyone():
    cluster = SimCluster(GossipConfig.lan(), seed=17)
    cluster.add_nodes(10)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    cluster.update_meta("node-0004", b"role=server")

    def everyone_sees() -> bool:
        views = [m.core.member("node-0004") for m in cluster.running()]
        return all(view is not None and view.meta == b"role=server" for view in views)

    assert cluster.run_until_true(everyone_sees, timeout=10) is not None


def test_user_broadcast_reaches_all_when_the_upper_layer_rebroadcasts():
    # As in memberlist, the core delivers user broadcasts once; the layer above (Serf)
    # de-duplicates and re-queues what it has not seen, which makes it epidemic.
    cluster = SimCluster(GossipConfig.lan(), seed=19)
    cluster.add_nodes(10)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None
    seen: dict[str, set[bytes]] = {name: set() for name in cluster.members}

    def relay(_time, observer, effect):
        if isinstance(effect, UserMessage) and effect.payload not in seen[observer]:
            seen[observer].add(effect.payload)
            cluster.members[observer].core.broadcast_user(effect.payload, cluster.now)

    cluster.listeners.append(relay)
    seen["node-0001"].add(b"deploy v2")
    cluster.broadcast_user("node-0001", b"deploy v2")
    took = cluster.run_until_true(
        lambda: all(b"deploy v2" in payloads for payloads in seen.values()), timeout=10
    )
    assert took is not None


def test_encrypted_cluster_with_label_converges():
    cluster = SimCluster(GossipConfig.lan(), seed=23, keys=[bytes(range(32))], label="prod")
    cluster.add_nodes(10)
    assert cluster.run_until_true(cluster.converged, timeout=30) is not None


def test_simulation_is_deterministic():
    def run() -> list[tuple[str, int]]:
        cluster = SimCluster(GossipConfig.lan(), seed=31, loss=0.05)
        cluster.add_nodes(12)
        cluster.run_for(20)
        cluster.kill("node-0003")
        cluster.run_for(40)
        return [(m.name, m.core.stats.packets_sent) for m in cluster.running()]

    assert run() == run()


MEMBERLIST_TIMING = {"adaptive_probe_timeout": False, "suspicion_probes": False}


def kill_to_dead_everywhere(config: GossipConfig, n: int, seed: int) -> float:
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(n)
    cluster.run_for(5 + seed % 5)
    victim = f"node-{seed % n:04d}"
    cluster.kill(victim)
    live = [m.name for m in cluster.running()]
    took = cluster.run_until_true(
        lambda: cluster.all_see(victim, {NodeStatus.DEAD}, live), timeout=60, step=0.01
    )
    assert took is not None
    return took


def test_detection_beats_memberlist_timing_on_the_same_seeds():
    # The same clusters, kills and randomness: only the probe timeout (adapted to the
    # measured round trip) and the probes of a suspect by those who learn of it differ.
    # What is left is the wait for a first probe and Lifeguard's minimum (4 s here).
    seeds = range(30)
    ours = sorted(kill_to_dead_everywhere(GossipConfig.lan(), 10, seed) for seed in seeds)
    theirs = sorted(
        kill_to_dead_everywhere(GossipConfig.lan(**MEMBERLIST_TIMING), 10, seed) for seed in seeds
    )
    assert ours[15] < 0.9 * theirs[15]
    assert sum(ours) < sum(theirs)
    minimum = suspicion_timeout(4, 10, 1.0)
    assert min(ours) >= minimum


def test_network_wide_delay_spikes_give_no_false_declaration():
    # Every 10-30 s one-way delays jump to 0.1-1 s for up to 3 s. Probes fail and members
    # are suspected, but every suspect is alive and refutes: nobody is declared dead.
    config = GossipConfig.lan()

    def set_delay(network: SimNetwork, delay: tuple[float, float]) -> Callable[[], None]:
        def action() -> None:
            network.delay = delay

        return action

    for seed in (1, 2, 3):
        cluster = SimCluster(config, seed=seed, record_events=False)
        cluster.bootstrap(30)
        rng = random.Random(seed)
        at = 0.0
        while at < 200:
            at += rng.uniform(10, 30)
            low = rng.uniform(0.1, 0.5)
            cluster.at(at, set_delay(cluster.network, (low, 2 * low)))
            at += rng.uniform(0.5, 3.0)
            cluster.at(at, set_delay(cluster.network, (0.001, 0.005)))
        # Past the last spike (which may start just before 200 s), every suspect refutes.
        cluster.run_until(max(200.0, at))
        assert cluster.run_until_true(cluster.converged, timeout=30) is not None
        suspected = sum(m.core.stats.suspicions_raised for m in cluster.running())
        declared = sum(m.core.stats.members_declared_dead for m in cluster.running())
        assert suspected > 0
        assert declared == 0
