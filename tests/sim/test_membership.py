"""Deterministic cluster simulations of the Serf layer: user events exactly once (also
under loss and duplication), coalescing, graceful leave, failure and reap, ForceLeave with
and without prune, name reuse after a leave, and a restart from a snapshot."""

from __future__ import annotations

from controlplane.gossip import GossipConfig, NodeStatus
from controlplane.membership import EventType, MembershipConfig, MemberStatus, parse_snapshot
from controlplane.testing.membership_sim import MembershipSimCluster

ALIVE = {MemberStatus.ALIVE}


def cluster_of(
    count: int,
    config: MembershipConfig | None = None,
    *,
    seed: int = 1,
    loss: float = 0.0,
    duplicate: float = 0.0,
) -> tuple[MembershipSimCluster, list[str]]:
    cluster = MembershipSimCluster(
        GossipConfig.local(), config, seed=seed, loss=loss, duplicate=duplicate
    )
    names = [f"n{index}" for index in range(count)]
    cluster.start(names[0])
    for name in names[1:]:
        cluster.start(name, seeds=[names[0]])
    converged = cluster.run_until_true(
        lambda: all(cluster.all_status(n, ALIVE, names) for n in names), timeout=60
    )
    assert converged is not None
    return cluster, names


def delivered(cluster: MembershipSimCluster, name: str) -> list[tuple[str, bytes, int]]:
    return [(e.name, e.payload, e.lamport_time) for _at, e in cluster.user_events[name]]


def test_user_event_reaches_every_member_exactly_once():
    cluster, names = cluster_of(12)
    ltime = cluster.fire("n3", "deploy", b"v1")
    cluster.run_for(30)
    for name in names:
        assert delivered(cluster, name) == [("deploy", b"v1", ltime)], name


def test_user_events_exactly_once_under_loss_and_duplication():
    cluster, names = cluster_of(12, seed=4, loss=0.10, duplicate=0.10)
    fired = []
    for index in range(5):
        source = names[(3 * index) % len(names)]
        fired.append(
            ("deploy", f"v{index}".encode(), cluster.fire(source, "deploy", b"v%d" % index))
        )
        cluster.run_for(0.5)
    # Gossip reaches nearly everyone; push-pull (every 15 s here) carries the rest.
    cluster.run_for(60)
    for name in names:
        got = delivered(cluster, name)
        assert sorted(got) == sorted(fired), name
    assert sum(cluster.layers[n].stats.user_events_duplicate for n in names) > 0


def test_burst_of_joins_is_coalesced_into_one_event():
    config = MembershipConfig(coalesce_period=5.0, quiescent_period=2.0)
    cluster = MembershipSimCluster(GossipConfig.local(), config, seed=2)
    cluster.start("seed")
    joiners = [f"j{index}" for index in range(6)]
    for name in joiners:
        cluster.start(name, seeds=["seed"])
    cluster.run_for(10)
    joins = [e for _at, e in cluster.member_events["seed"] if e.type is EventType.MEMBER_JOIN]
    assert len(joins) == 1
    assert sorted(m.name for m in joins[0].members) == joiners
    at = next(at for at, e in cluster.member_events["seed"] if e is joins[0])
    assert at <= 5.0  # within one coalesce period of the first join


def test_graceful_leave_is_left_everywhere_never_failed():
    cluster, names = cluster_of(8)
    cluster.leave("n5")
    cluster.run_for(5)
    assert cluster.layers["n5"].leave_done(cluster.now)
    cluster.kill("n5")
    cluster.run_for(30)
    others = [n for n in names if n != "n5"]
    assert cluster.all_status("n5", {MemberStatus.LEFT}, others)
    for name in others:
        assert [m.name for m in cluster.event_members(name, EventType.MEMBER_LEAVE)] == ["n5"]
        assert cluster.event_members(name, EventType.MEMBER_FAILED) == []


def test_killed_member_fails_then_is_reaped_after_reconnect_timeout():
    config = MembershipConfig(reconnect_timeout=20.0, reap_interval=5.0)
    cluster, names = cluster_of(6, config)
    cluster.kill("n2")
    others = [n for n in names if n != "n2"]
    took = cluster.run_until_true(
        lambda: cluster.all_status("n2", {MemberStatus.FAILED}, others), timeout=30
    )
    assert took is not None
    failed_at = cluster.now
    for name in others:
        assert [m.name for m in cluster.event_members(name, EventType.MEMBER_FAILED)] == ["n2"]
        assert cluster.event_members(name, EventType.MEMBER_REAP) == []
    cluster.run_for(15)
    assert cluster.all_status("n2", {MemberStatus.FAILED}, others)  # kept, being retried
    cluster.run_until_true(lambda: cluster.all_status("n2", {None}, others), timeout=20)
    assert cluster.now - failed_at <= 20 + 5 + 5
    for name in others:
        reaped = [
            (at, m.name)
            for at, e in cluster.member_events[name]
            for m in e.members
            if e.type is EventType.MEMBER_REAP
        ]
        assert [m for _at, m in reaped] == ["n2"]
        assert reaped[0][0] - failed_at >= 20 - took


def test_force_leave_moves_a_failed_member_to_left_everywhere():
    cluster, names = cluster_of(6)
    cluster.kill("n4")
    others = [n for n in names if n != "n4"]
    assert (
        cluster.run_until_true(
            lambda: cluster.all_status("n4", {MemberStatus.FAILED}, others), timeout=30
        )
        is not None
    )
    cluster.force_leave("n0", "n4")
    # Gossip reaches most members at once; one that every transmit of the intent
    # missed learns it at its next push-pull (anti-entropy), as with Serf.
    assert (
        cluster.run_until_true(
            lambda: cluster.all_status("n4", {MemberStatus.LEFT}, others), timeout=40
        )
        is not None
    )
    for name in others:
        assert [m.name for m in cluster.event_members(name, EventType.MEMBER_LEAVE)] == ["n4"]


def test_force_leave_with_prune_erases_the_member_everywhere():
    cluster, names = cluster_of(6)
    cluster.kill("n4")
    others = [n for n in names if n != "n4"]
    assert (
        cluster.run_until_true(
            lambda: cluster.all_status("n4", {MemberStatus.FAILED}, others), timeout=30
        )
        is not None
    )
    cluster.force_leave("n1", "n4", prune=True)
    cluster.run_for(5)
    assert cluster.all_status("n4", {None}, others)
    for name in others:
        assert [m.name for m in cluster.event_members(name, EventType.MEMBER_REAP)] == ["n4"]
    cluster.run_for(40)  # push-pull does not bring it back
    assert cluster.all_status("n4", {None}, others)


def test_left_member_rejoins_with_the_same_name():
    cluster, names = cluster_of(6)
    cluster.leave("n3")
    cluster.run_for(5)
    cluster.kill("n3")
    others = [n for n in names if n != "n3"]
    cluster.run_for(10)
    assert cluster.all_status("n3", {MemberStatus.LEFT}, others)
    cluster.start("n3", seeds=["n0"])
    took = cluster.run_until_true(lambda: cluster.all_status("n3", ALIVE, names), timeout=30)
    assert took is not None
    cluster.run_for(30)  # and it stays alive: old leave intents do not win
    assert cluster.all_status("n3", ALIVE, names)
    for name in others:
        joins = [m.name for m in cluster.event_members(name, EventType.MEMBER_JOIN)]
        assert joins.count("n3") == 2


def test_tags_update_is_seen_everywhere_as_member_update():
    cluster, names = cluster_of(5)
    cluster.update_tags("n2", {"role": "db"})
    cluster.run_for(5)
    for name in names:
        assert cluster.layers[name].member("n2").tags == {"role": "db"}
        assert "n2" in [m.name for m in cluster.event_members(name, EventType.MEMBER_UPDATE)]


def test_restart_from_snapshot_rejoins_without_seeds_and_replays_nothing_old():
    cluster, names = cluster_of(6)
    for index in range(3):
        cluster.fire("n1", "deploy", b"old%d" % index)
    cluster.run_for(5)
    assert len(delivered(cluster, "n5")) == 3
    cluster.kill("n5")
    snapshot, problems = parse_snapshot(bytes(cluster.snapshot_files["n5"]))
    assert problems == []
    assert {name for name, _address in snapshot.members} == set(names) - {"n5"}
    assert snapshot.event_time >= 3
    missed = cluster.fire("n2", "deploy", b"missed")  # fired while n5 is down
    cluster.run_for(2)
    before = len(delivered(cluster, "n5"))
    layer = cluster.start("n5", snapshot=snapshot)  # no seeds: rejoins from the snapshot
    assert layer.lamport_time > snapshot.lamport_time
    took = cluster.run_until_true(lambda: cluster.all_status("n5", ALIVE, names), timeout=30)
    assert took is not None
    cluster.run_for(20)
    after = delivered(cluster, "n5")[before:]
    assert after == [("deploy", b"missed", missed)]


def test_a_force_left_member_is_no_longer_retried_by_reconnect() -> None:
    config = GossipConfig.local(reconnect_interval=2.0)
    cluster = MembershipSimCluster(config, seed=21)
    for name in ("a", "b", "c"):
        cluster.start(name, seeds=["a"] if name != "a" else [])
    assert cluster.run_until_true(lambda: cluster.converged(["a", "b", "c"]), timeout=60)
    cluster.pause("c")
    assert cluster.run_until_true(
        lambda: cluster.all_status("c", {MemberStatus.FAILED}, ["a", "b"]), timeout=60
    )
    cluster.force_leave("a", "c")
    assert cluster.run_until_true(
        lambda: cluster.all_status("c", {MemberStatus.LEFT}, ["a", "b"]), timeout=30
    )
    assert cluster.layers["a"].node.member("c").status is NodeStatus.LEFT
    attempts = cluster.layers["a"].node.stats.reconnect_attempts
    cluster.run_for(20)
    # Nothing but the seed (already alive) could be retried: c is left, not failed.
    assert cluster.all_status("c", {MemberStatus.LEFT}, ["a", "b"])
    assert cluster.layers["a"].node.stats.reconnect_attempts == attempts
