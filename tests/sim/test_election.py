"""Seeded simulations of the election: safety and views under faults, failover, rank changes.

The checker lives in ``controlplane.testing.election_sim``; these tests run it
over many seeds, prove it catches deliberately broken elections (a holder without
the skew margin; views judged fresh from a copy's arrival), and measure failover,
rank hand-over and leadership that stays put on scripted runs.
"""

from __future__ import annotations

import time

import pytest

from controlplane.election import Echo, Election, ElectionConfig, LeaderView, failover_bound
from controlplane.election.election import Role
from controlplane.election.lease import min_safe_skew
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


class ViewsFromArrival(Election):
    """Broken on purpose: a view runs from when a copy arrives (the old rule), so a
    late copy (re-sent, or queued while the receiver was paused) revives a lease."""

    def _view_end(self, echo: Echo | None, remaining: float, now: float) -> float | None:
        return now + min(remaining, self._cfg.lease_time) + self._cfg.max_clock_skew


class VoterGrantsTwoHolders(Election):
    """Broken on purpose: a voter grants a candidate while it still backs another
    leadership (it forgets its grant and any lease it knows to be in force)."""

    def _decide(
        self, candidate: str, epoch: int, established: bool, now: float
    ) -> tuple[bool, float, bool]:
        if self._grant is not None and self._grant.candidate != candidate:
            self._grant = None
        return super()._decide(candidate, epoch, established, now)

    def _blocking_lease(self, now: float, candidate: str) -> float:
        return 0.0


class HolderRenewsWithoutGrants(Election):
    """Broken on purpose: a leader extends its lease with every request it sends,
    whether or not anybody granted it."""

    def _sufficient_seq(self) -> int:
        if self._role is Role.LEADER and self._sent:
            return max(self._sent)
        return super()._sufficient_seq()


def test_thousand_seeded_runs_never_overlap_never_report_stale_and_epochs_only_grow() -> None:
    started = time.perf_counter()
    failures: dict[int, list[str]] = {}
    leaderships = views = 0
    for seed in PLAIN_SEEDS:
        sim = run_seed(seed, plain_config(seed))
        leaderships += len(sim.leaderships)
        views += sim.views_checked
        if sim.violations:
            failures[seed] = sim.violations[:3]
    for seed in QUORUM_SEEDS:
        sim = run_seed(seed, quorum_config(seed))
        leaderships += len(sim.leaderships)
        views += sim.views_checked
        if sim.violations:
            failures[seed] = sim.violations[:3]
    elapsed = time.perf_counter() - started
    runs = len(PLAIN_SEEDS) + len(QUORUM_SEEDS)
    print(f"{runs} runs, {leaderships} leaderships, {views} views checked, {elapsed:.1f}s")
    assert failures == {}
    # Faults must actually move leadership around, or the check proves little.
    assert leaderships > 3 * runs
    assert views > 1000 * runs
    assert elapsed < 120.0


def unchecked(config: ElectionConfig, **fields: float) -> ElectionConfig:
    """`config` with fields that `validate()` would refuse (a broken deployment)."""
    for name, value in fields.items():
        object.__setattr__(config, name, value)
    return config


DEFAULT = ElectionConfig()
MIN_SKEW = min_safe_skew(DEFAULT.lease_time, DEFAULT.max_drift)

# Elections broken on purpose, each of which the checker must catch within
# MUTANT_SEEDS runs: (name, election factory, election config). The first two break
# the rules of docs/election.md, the last three the margin `validate()` enforces.
MUTANTS: list[tuple[str, type[Election], ElectionConfig]] = [
    ("holder trusts the follower lease", HolderUsesFollowerRule, DEFAULT),
    ("views run from a copy's arrival", ViewsFromArrival, DEFAULT),
    ("a voter grants two holders", VoterGrantsTwoHolders, DEFAULT),
    ("a holder renews without grants", HolderRenewsWithoutGrants, DEFAULT),
    ("no skew margin at all", Election, unchecked(ElectionConfig(), max_clock_skew=0.0)),
    (
        "half the minimum skew margin",
        Election,
        unchecked(ElectionConfig(), max_clock_skew=MIN_SKEW / 2),
    ),
    (
        "a skew margin just below the minimum",
        Election,
        unchecked(ElectionConfig(), max_clock_skew=MIN_SKEW * 0.99),
    ),
]
MUTANT_SEEDS = range(300)


@pytest.mark.parametrize(("name", "factory", "election"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_the_checker_catches_every_mutant(
    name: str, factory: type[Election], election: ElectionConfig
) -> None:
    assert election.max_clock_skew < MIN_SKEW or factory is not Election, name
    caught = next(
        (
            seed
            for seed in MUTANT_SEEDS
            if run_seed(seed, SimConfig(election=election), factory=factory).violations
        ),
        None,
    )
    assert caught is not None, f"the checker missed the mutant: {name}"
    # The same run with the real election and the default margin is clean: what the
    # checker saw is the mutation, not the faults of that seed.
    control = run_seed(caught, SimConfig(election=DEFAULT)).violations
    assert control == [], f"seed {caught} is flagged without the mutation: {control[:2]}"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known gap: with max_clock_skew just above min_safe_skew (0.212 s for L=10 s, "
        "drift 1 %) seeds 163 and 174 show two connected leaders; runs are clean from "
        "about 0.6 s, and the default 1 s is clean over 1,000 seeds. validate() accepts "
        "the margin; the safety argument misses a term (docs/election.md, open problem)"
    ),
)
def test_a_margin_just_above_the_minimum_never_overlaps() -> None:
    election = unchecked(ElectionConfig(), max_clock_skew=MIN_SKEW + 0.01)
    assert election.max_clock_skew > MIN_SKEW
    failures = {
        seed: run_seed(seed, SimConfig(election=election)).violations[:1] for seed in (163, 174)
    }
    assert failures == {163: [], 174: []}


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


def test_checker_catches_views_judged_fresh_on_arrival() -> None:
    caught: dict[int, str] = {}
    for seed in range(100):
        sim = run_seed(seed, plain_config(seed), factory=ViewsFromArrival)
        if sim.violations:
            caught[seed] = sim.violations[0]
    assert caught, "the checker missed stale views"
    assert any("whose lease ended" in violation for violation in caught.values())


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


@pytest.mark.parametrize("quorum", [0, 5])
@pytest.mark.parametrize("seed", range(10))
def test_follower_restarts_never_move_leadership(seed: int, quorum: int) -> None:
    """Every member of rank 0; followers are killed and restarted, one at a time."""
    cfg = SimConfig(members=5, loss=0.02, election=ElectionConfig(quorum=quorum))
    sim = ElectionSim(cfg, seed)
    for name in sim.members:
        sim.set_rank(name, 0)
    sim.run_until(20.0)
    first = agreed(sim)
    assert first is not None
    for round_ in range(6):
        follower = sorted(n for n in sim.members if n != first.name)[round_ % 4]
        sim.kill(follower)
        sim.run_until(sim.now + sim.rng.uniform(0.5, 3.0))
        sim.restart(follower)
        sim.run_until(sim.now + 8.0)
    after = agreed(sim)
    assert after is not None
    assert (after.name, after.epoch) == (first.name, first.epoch)
    assert {lead.name for lead in sim.leaderships} == {first.name}
    assert sim.violations == []
