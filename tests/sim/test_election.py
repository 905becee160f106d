"""Seeded simulations of the election: safety under faults, failover, rank changes.

The safety checker lives in ``controlplane.testing.election_sim``; these tests
run it over many seeds, prove it catches a deliberately broken election, and
measure failover and rank hand-over on scripted runs.
"""

from __future__ import annotations

import time

import pytest

from controlplane.election import Election, ElectionConfig, LeaderView, failover_bound
from controlplane.testing.election_sim import ElectionSim, SimConfig, run_seed

PLAIN_SEEDS = range(600)
QUORUM_SEEDS = range(600, 1000)
QUORUM = ElectionConfig(quorum=5)


def plain_config(seed: int) -> SimConfig:
    # Odd seeds add a member that never has a rank (a pure follower).
    return SimConfig(unranked=seed % 2)


def quorum_config(seed: int) -> SimConfig:
    return SimConfig(election=QUORUM)


class HolderUsesFollowerRule(Election):
    """Broken on purpose: the holder trusts its lease as long as a voter keeps its grant."""

    def _holder_lease_end(self, sent_at: float) -> float:
        return self._follower_lease_end(sent_at)


def test_thousand_seeded_runs_never_overlap_and_epochs_only_grow() -> None:
    started = time.perf_counter()
    failures: dict[int, list[str]] = {}
    leaderships = 0
    for seed in PLAIN_SEEDS:
        sim = run_seed(seed, plain_config(seed))
        leaderships += len(sim.leaderships)
        if sim.violations:
            failures[seed] = sim.violations[:3]
    for seed in QUORUM_SEEDS:
        sim = run_seed(seed, quorum_config(seed))
        leaderships += len(sim.leaderships)
        if sim.violations:
            failures[seed] = sim.violations[:3]
    elapsed = time.perf_counter() - started
    print(f"{len(PLAIN_SEEDS) + len(QUORUM_SEEDS)} runs, {leaderships} leaderships, {elapsed:.1f}s")
    assert failures == {}
    # Faults must actually move leadership around, or the check proves little.
    assert leaderships > 3 * (len(PLAIN_SEEDS) + len(QUORUM_SEEDS))
    assert elapsed < 60.0


def test_checker_catches_a_holder_without_the_skew_margin() -> None:
    plain = [
        seed
        for seed in PLAIN_SEEDS
        if run_seed(seed, plain_config(seed), factory=HolderUsesFollowerRule).violations
    ]
    quorum = [
        seed
        for seed in QUORUM_SEEDS
        if run_seed(seed, quorum_config(seed), factory=HolderUsesFollowerRule).violations
    ]
    assert plain, "the checker missed overlaps of the broken election without quorum"
    assert quorum, "the checker missed overlaps of the broken election in quorum mode"


def agreed(sim: ElectionSim) -> LeaderView | None:
    """The leader every running member names, if they all agree and it leads."""
    views = [sim.election(name).leader(sim.local(name)) for name in sim.members if sim.up(name)]
    first = views[0]
    if first is None or any(v is None or v.name != first.name for v in views):
        return None
    if not sim.up(first.name):
        return None
    return first if sim.election(first.name).is_leader(sim.local(first.name)) else None


@pytest.mark.parametrize("quorum", [0, 5])
@pytest.mark.parametrize("seed", range(40))
def test_failover_after_leader_killed_is_within_bound(seed: int, quorum: int) -> None:
    detection = 2.0
    cfg = SimConfig(election=ElectionConfig(quorum=quorum), detection_delay=detection, loss=0.0)
    sim = ElectionSim(cfg, seed)
    sim.run_until(30.0)
    before = agreed(sim)
    assert before is not None
    killed_at = sim.now
    sim.kill(before.name)
    e = cfg.election
    bound = failover_bound(e.lease_time, e.max_clock_skew, e.beat_interval, detection)
    step = 0.01
    while sim.now < killed_at + bound:
        sim.run_until(sim.now + step)
        after = agreed(sim)
        if after is not None:
            break
    assert after is not None, f"no agreement within {bound}s"
    print(f"failover {sim.now - killed_at:.2f}s (bound {bound}s)")
    assert after.name != before.name
    assert after.epoch > before.epoch
    assert sim.violations == []


@pytest.mark.parametrize("seed", range(20))
def test_rank_change_moves_leadership_only_after_the_lease_ends(seed: int) -> None:
    sim = ElectionSim(SimConfig(loss=0.0), seed)
    sim.run_until(30.0)
    old = agreed(sim)
    assert old is not None
    holder = sim.election(old.name)
    challenger = next(name for name in sim.members if name != old.name)
    # Lease end as the old holder believes it right before the change.
    lease_end_real = (
        sim.now + holder.leader(sim.local(old.name)).lease_remaining / sim.members[old.name].rate
    )
    sim.set_rank(challenger, -1)
    old_led_until = sim.now
    new_began = None
    while sim.now < 60.0:
        sim.run_until(sim.now + 0.01)
        if holder.is_leader(sim.local(old.name)):
            old_led_until = sim.now
        if new_began is None and sim.election(challenger).is_leader(sim.local(challenger)):
            new_began = sim.now
    # The old holder kept its lease to the end, and only then did the challenger lead.
    assert old_led_until >= lease_end_real - 0.02
    assert new_began is not None
    assert new_began >= old_led_until
    assert sim.election(challenger).epoch > old.epoch
    assert sim.violations == []
