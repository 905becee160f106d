"""Failure detection, partitions and pauses with real agents in containers."""

from __future__ import annotations

import time

from controlplane.v1 import membership_pb2
from tests.cluster.conftest import ClusterFactory
from tests.cluster.harness import (
    ALIVE,
    DISSEMINATION,
    FAILED,
    LEFT,
    LOCAL,
    MEMBERSHIP,
    POLL,
    EventWatcher,
    detection_bound,
    isolated_detection_bound,
    suspicion_window,
    wait_until,
    watchers,
)

SIZE = 5
# From a restart (or a reconnect, or an unpause) to ALIVE everywhere: the agent
# starts (a few seconds of Python start-up on a loaded 2-core machine) and joins,
# and the alive broadcast spreads.
REJOIN_BOUND = 30.0


def test_kill_is_detected_and_restart_rejoins(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(SIZE)
    victim = cluster["n5"]
    others = [a for a in cluster.agents if a is not victim]
    bound = detection_bound(SIZE)

    cluster.kill(victim)
    detected = cluster.wait_status(
        others, [victim], [FAILED], bound, f"{victim.name} FAILED in every other view"
    )
    print(f"kill detected everywhere in {detected:.1f} s (bound {bound:.2f} s)")
    # Nobody else was touched: still alive everywhere.
    assert cluster.all_see(others, others, [ALIVE]), cluster.views(others)

    restarting = time.monotonic()
    cluster.restart(victim)
    cluster.wait_converged(cluster.agents, REJOIN_BOUND)
    rejoined = time.monotonic() - restarting
    print(f"restarted {victim.name} ALIVE everywhere in {rejoined:.1f} s (bound {REJOIN_BOUND} s)")


def test_partition_heals_by_itself(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(SIZE)
    majority = [cluster["n1"], cluster["n2"], cluster["n3"]]
    minority = [cluster["n4"], cluster["n5"]]
    _, longest = suspicion_window(SIZE)
    detect = detection_bound(SIZE)

    cut_at = time.monotonic()
    cluster.partition(majority, minority)
    # Each side sees the other side FAILED, and itself whole.
    seen_majority = cluster.wait_status(
        majority, minority, [FAILED], detect, "the majority lists n4 and n5 FAILED"
    )
    # A side that loses most of the cluster probes more slowly as its probes fail
    # (Lifeguard), so its bound is the isolated one.
    isolated_bound = isolated_detection_bound(SIZE)
    cluster.wait_status(
        minority,
        majority,
        [FAILED],
        isolated_bound - (time.monotonic() - cut_at),
        "the minority lists n1, n2 and n3 FAILED",
    )
    assert cluster.all_see(minority, minority, [ALIVE]), cluster.views(minority)
    assert cluster.all_see(majority, majority, [ALIVE]), cluster.views(majority)
    apart = time.monotonic() - cut_at
    # Stay apart longer than the longest suspicion timeout, and past the time the
    # others gossip to the dead, so the heal below can only come from reconnects.
    hold = max(longest, LOCAL.gossip_to_the_dead_time) + DISSEMINATION
    remaining = hold - (time.monotonic() - cut_at)
    if remaining > 0:
        time.sleep(remaining)
    print(
        f"majority saw the minority FAILED in {seen_majority:.1f} s (bound {detect:.2f} s), "
        f"the minority saw the majority FAILED after {apart:.1f} s (bound {isolated_bound:.2f} s); "
        f"apart {time.monotonic() - cut_at:.1f} s"
    )

    cluster.heal_partition()
    heal_bound = 2 * MEMBERSHIP.reconnect_interval + detect
    healed = cluster.wait_converged(cluster.agents, heal_bound)
    print(f"converged {healed:.1f} s after the heal, no --join (bound {heal_bound:.1f} s)")
    for name, view in cluster.views().items():
        assert view is not None, name
        assert all(s == "MEMBER_STATUS_ALIVE" for s in view.values()), (name, view)
        assert "MEMBER_STATUS_LEFT" not in view.values(), (name, view)
    assert LEFT not in {s for a in cluster.agents for s in a.list_members().values()}


def test_pause_refutes_and_short_pause_is_not_a_failure(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(SIZE)
    victim = cluster["n3"]
    others = [a for a in cluster.agents if a is not victim]
    shortest, longest = suspicion_window(SIZE)

    watches: list[EventWatcher] = list(watchers(others))
    try:
        # The watches are live: a user event reaches every one of them.
        others[0].membership().FireUserEvent(
            membership_pb2.FireUserEventRequest(name="probe", payload=b"x"), timeout=2
        )
        wait_until(
            lambda: all(any(e.user_name == "probe" for e in w.snapshot()) for w in watches),
            5.0,
            "the probe user event on every watch",
        )

        # 1. A pause shorter than the suspicion timeout: no failure anywhere.
        short = shortest / 2
        paused_at = time.monotonic()
        cluster.pause(victim)
        time.sleep(short)
        cluster.unpause(victim)
        # A suspicion raised during the pause and never refuted would end by the
        # longest timeout after it began: watch that long.
        watch_until = paused_at + longest + DISSEMINATION
        while time.monotonic() < watch_until:
            time.sleep(POLL)
            assert cluster.all_see(others, [victim], [ALIVE]), cluster.views()
        failures = [
            e
            for w in watches
            for e in w.snapshot()
            if e.type == membership_pb2.EVENT_TYPE_MEMBER_FAILED
        ]
        assert not failures, f"a {short:.1f} s pause caused failure events: {failures}"
        assert all(w.error is None for w in watches), [w.error for w in watches]
        print(
            f"{short:.1f} s pause: no failure event in {longest + DISSEMINATION:.0f} s of watching"
        )

        # 2. A pause of three suspicion timeouts: it refutes and is alive everywhere.
        long_pause = 3 * shortest
        cluster.pause(victim)
        paused_at = time.monotonic()
        saw_failed = False
        while time.monotonic() < paused_at + long_pause:
            saw_failed = saw_failed or cluster.all_see(others, [victim], [FAILED])
            time.sleep(POLL)
        before_unpause = cluster.views(others)
        cluster.unpause(victim)
        unpaused_at = time.monotonic()
        cluster.wait_converged(cluster.agents, REJOIN_BOUND)
        back = time.monotonic() - unpaused_at
        print(
            f"views of {victim.name} just before the unpause: "
            f"{ {o: (v or {}).get(victim.name) for o, v in before_unpause.items()} }"
        )
        print(
            f"{long_pause:.0f} s pause (FAILED everywhere during it: {saw_failed}); "
            f"ALIVE everywhere {back:.1f} s after unpause (bound {REJOIN_BOUND} s)"
        )
        if saw_failed:
            # A paused agent cannot refute: nobody may list it ALIVE before the unpause.
            assert all(
                (v or {}).get(victim.name) != "MEMBER_STATUS_ALIVE" for v in before_unpause.values()
            ), before_unpause
            # The positive control of part 1: these watches do report failures.
            for w in watches:
                assert any(
                    e.type == membership_pb2.EVENT_TYPE_MEMBER_FAILED and victim.name in e.members
                    for e in w.snapshot()
                ), (w.agent.name, w.snapshot())
    finally:
        for w in watches:
            w.stop()


def test_one_dns_name_with_many_records_forms_the_cluster_and_finds_a_moved_agent(
    make_cluster: ClusterFactory,
) -> None:
    # Every agent joins through one name that Docker's DNS answers with one A record
    # per container (network aliases), as a Kubernetes headless Service does.
    cluster = make_cluster(3, shared_alias="cp-peers")
    assert all("--join" in a.args and "cp-peers" in a.args for a in cluster.agents)
    n1, n2, n3 = cluster.agents
    hosts = list(cluster.subnet.hosts())

    # n2 restarts while n1 cannot answer (paused, still in DNS) and n3 is gone: its
    # join through the name reaches nobody, so it keeps trying.
    cluster.kill(n3)
    cluster.pause(n1)
    cluster.move(n2, str(hosts[40]))
    try:
        wait_until(
            lambda: "reached no member; retrying" in n2.logs(),
            60.0,
            "n2 retrying its join through the name",
            describe=n2.logs,
        )
    finally:
        cluster.unpause(n1)
    # n1 is rescheduled to another address and starts with no --join at all: only
    # n2 resolving the name again can bring the two together.
    without_join = [a for a in n1.args if a not in ("--join", "cp-peers")]
    cluster.move(n1, str(hosts[41]), without_join)
    assert "--join" not in n1.args
    took = cluster.wait_converged([n1, n2], REJOIN_BOUND)
    print(f"moved agents found each other through the name again in {took:.1f} s")
    assert "joined the cluster through" in n2.logs()


def test_udp_filtered_member_lives_over_tcp_and_fails_when_tcp_goes_too(
    make_cluster: ClusterFactory,
) -> None:
    # memberlist's TCP fallback ping: every UDP probe of n3 (direct and indirect) is lost,
    # and each answer over the gRPC port keeps it from being suspected.
    cluster = make_cluster(3)
    victim = cluster["n3"]
    others = [a for a in cluster.agents if a is not victim]
    cluster.block_udp(victim)
    # Longer than it takes to declare a silent member FAILED: a member kept alive by UDP
    # alone would be gone by the end.
    hold = detection_bound(3)
    until = time.monotonic() + hold
    while time.monotonic() < until:
        assert cluster.all_see(cluster.agents, cluster.agents, [ALIVE]), cluster.views()
        time.sleep(POLL)
    warned = [a.name for a in others if "answered over TCP but not over UDP" in a.logs()]
    assert warned, "no agent said that n3 answers over TCP only"
    # Now TCP goes too (a black hole): n3 is declared FAILED as any silent member.
    cluster.partition([victim], others)
    detected = cluster.wait_status(
        others, [victim], [FAILED], detection_bound(3), f"{victim.name} FAILED in every other view"
    )
    print(
        f"UDP-filtered {victim.name} ALIVE everywhere for {hold:.1f} s (warned by {warned}); "
        f"FAILED {detected:.1f} s after TCP was cut too"
    )
