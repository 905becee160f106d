"""Gossip core benchmarks on the deterministic simulator. Prints; asserts nothing.

    python -m bench.gossip_sim            # all four parts, about ten minutes
    python bench/gossip_sim.py --quick    # smaller sizes, fewer seeds
    python bench/gossip_sim.py --part cost

1. Convergence: time for one metadata update to reach 99.99 % and 100 % of N members,
   beside Serf's convergence model 1 / (1 + (N+1) e^(-0.5 * fanout * rounds)) at the
   same gossip interval and fanout.
2. Cost: wall time of N = 1000 members for 60 virtual seconds.
3. Lifeguard: false positives under CPU starvation with Lifeguard on and off, summed
   over five seeds (see ``ReceiveLag`` for the model and ``StarvationResult`` for what
   is counted).
4. Detection: kill-to-dead-everywhere with memberlist's probe timing beside
   controlplane's (``GossipConfig.adaptive_probe_timeout`` and ``suspicion_probes``,
   each alone and both), and the false declarations of each under packet loss, delay
   spikes and CPU starvation, over five seeds.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.gossip import Effect, GossipConfig, GossipNode, MemberLeft, MemberUpdated
from controlplane.gossip.state import Address, NodeStatus
from controlplane.testing.sim import SimCluster


def serf_model_time(n: int, fraction: float, fanout: int, interval: float) -> float:
    """Seconds for Serf's model to reach ``fraction`` of ``n`` members."""
    rounds = 2.0 * math.log((n + 1) / (1.0 / fraction - 1.0)) / fanout
    return rounds * interval


def convergence(n: int, seed: int) -> tuple[float | None, float | None]:
    config = GossipConfig.lan()
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(n)
    cluster.run_for(2.0)
    subject = "node-0000"
    reached: list[float] = []
    start = cluster.now

    def on_event(when: float, _observer: str, effect: object) -> None:
        if isinstance(effect, MemberUpdated) and effect.member.name == subject:
            reached.append(when - start)

    cluster.listeners.append(on_event)
    cluster.update_meta(subject, b"version=2")
    others = n - 1
    cluster.run_until_true(lambda: len(reached) >= others, timeout=60.0, step=0.05)
    reached.sort()
    needed = math.ceil(0.9999 * others)
    t9999 = reached[needed - 1] if len(reached) >= needed else None
    t100 = reached[others - 1] if len(reached) >= others else None
    return t9999, t100


SEEDS = (1, 2, 3, 4, 5)


def wall_time(n: int, virtual: float, seed: int) -> tuple[float, int]:
    cluster = SimCluster(GossipConfig.lan(), seed=seed, record_events=False)
    cluster.bootstrap(n)
    started = time.perf_counter()
    cluster.run_for(virtual)
    return time.perf_counter() - started, cluster.events_processed


# The failure detector over UDP alone. The simulator's streams are lossless and ignore
# ReceiveLag (a starved member would answer a TCP fallback ping at once), so with
# tcp_pings on, the loss and starvation scenarios would measure the fallback's model,
# not the protocol. A killed member refuses the fallback ping at once, so detection
# times would be the same either way.
UDP_ONLY: dict[str, bool] = {"tcp_pings": False}


def lifeguard_config(lifeguard: bool) -> GossipConfig:
    """memberlist's LAN profile with the three Lifeguard components on, or all three off.

    Off is plain SWIM: the health multiplier is pinned at 1 (no LHM), the suspicion
    timeout is fixed at its minimum whatever the confirmations (no LHA-suspicion: max =
    min), and a probe of a suspect carries no suspicion (no buddy system). Nothing else
    differs: the same probe, indirect-probe, nack and dissemination paths run.
    """
    if lifeguard:
        return GossipConfig.lan(**UDP_ONLY)
    return GossipConfig.lan(
        awareness_max_multiplier=1, suspicion_max_timeout_mult=1, buddy_system=False, **UDP_ONLY
    )


class ReceiveLag:
    """CPU starvation of one member: its input is handled late, in order; its timers run.

    A starved process falls behind on its socket: each datagram waits ``lag`` seconds
    (and behind every earlier one) before the core sees it, while the timers that
    decide an ack is missing keep firing. ``lag`` changes every few seconds, drawn
    log-uniformly from ``[low, high]``. Built on the core's public entry points, so the
    simulator is unchanged: ``receive_packet`` queues, ``next_deadline`` and ``tick``
    release what is due (input first: it arrived before the timer that is now due).
    """

    def __init__(
        self, core: GossipNode, rng: random.Random, low: float, high: float, now: float
    ) -> None:
        self._receive = core.receive_packet
        self._tick = core.tick
        self._deadline = core.next_deadline
        self._rng = rng
        self._low = low
        self._high = high
        self._lag = 0.0
        self._lag_until = now
        self._last_release = now
        self._queue: deque[tuple[float, Address, bytes]] = deque()
        # Instance attributes shadow the methods; the simulator only calls these three.
        hooks = (
            ("receive_packet", self.receive_packet),
            ("tick", self.tick),
            ("next_deadline", self.next_deadline),
        )
        for attribute, hook in hooks:
            setattr(core, attribute, hook)

    def receive_packet(self, src: Address, data: bytes, now: float) -> list[Effect]:
        if now >= self._lag_until:
            self._lag = self._low * (self._high / self._low) ** self._rng.random()
            self._lag_until = now + self._rng.uniform(2.0, 10.0)
        release = max(now + self._lag, self._last_release)
        self._last_release = release
        self._queue.append((release, src, data))
        return []

    def next_deadline(self) -> float:
        deadline = self._deadline()
        if self._queue:
            deadline = min(deadline, self._queue[0][0])
        return deadline

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        while self._queue and self._queue[0][0] <= now:
            _release, src, data = self._queue.popleft()
            effects.extend(self._receive(src, data, now))
        effects.extend(self._tick(now))
        return effects


@dataclass(slots=True)
class StarvationResult:
    """Outcome of one starvation run; nobody is killed, so every declaration is false."""

    # Suspicion timers that expired into a failure declaration (suspect -> dead), by where.
    declared_by_healthy: int = 0
    declared_by_starved: int = 0
    # Member-failed events seen anywhere (a declaration and its spread), by subject.
    events_about_healthy: int = 0
    events_about_starved: int = 0
    # Suspicions started (a member's view of another going alive -> suspect), by observer.
    suspicions_by_healthy: int = 0
    suspicions_by_starved: int = 0
    health_of_starved: list[int] = field(default_factory=list)

    @property
    def declarations(self) -> int:
        return self.declared_by_healthy + self.declared_by_starved

    @property
    def suspicions(self) -> int:
        return self.suspicions_by_healthy + self.suspicions_by_starved


def starvation_false_positives(
    lifeguard: bool,
    n: int,
    starved: int,
    seconds: float,
    seed: int,
    lag: tuple[float, float] = (0.1, 2.0),
) -> StarvationResult:
    """False failure declarations when every member lives but ``starved`` of them lag."""
    config = lifeguard_config(lifeguard)
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(n)
    rng = random.Random(seed)
    victims = {f"node-{index:04d}" for index in rng.sample(range(n), starved)}
    result = StarvationResult()

    def on_event(_when: float, _observer: str, effect: object) -> None:
        if isinstance(effect, MemberLeft) and not effect.left:
            if effect.member.name in victims:
                result.events_about_starved += 1
            else:
                result.events_about_healthy += 1

    cluster.listeners.append(on_event)
    for name in sorted(victims):
        member = cluster.members[name]
        ReceiveLag(member.core, random.Random(rng.getrandbits(64)), *lag, now=cluster.now)
    cluster.run_for(seconds)
    for member in cluster.members.values():
        declared = member.core.stats.members_declared_dead
        suspicions = member.core.stats.suspicions_raised
        if member.name in victims:
            result.declared_by_starved += declared
            result.suspicions_by_starved += suspicions
            result.health_of_starved.append(member.core.health_score)
        else:
            result.declared_by_healthy += declared
            result.suspicions_by_healthy += suspicions
    return result


# ---------------------------------------------------------------------- detection

DETECTION_MODES: dict[str, dict[str, bool]] = {
    "memberlist timing": {"adaptive_probe_timeout": False, "suspicion_probes": False, **UDP_ONLY},
    "+ adaptive timeout": {"suspicion_probes": False, **UDP_ONLY},
    "+ suspicion probes": {"adaptive_probe_timeout": False, **UDP_ONLY},
    "controlplane": {**UDP_ONLY},
}


def detection_time(config: GossipConfig, n: int, seed: int) -> float | None:
    """Seconds from killing one member of a settled cluster to every other seeing it dead."""
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(n)
    rng = random.Random(seed)
    cluster.run_for(5.0 + 5.0 * rng.random())
    victim = f"node-{rng.randrange(n):04d}"
    cluster.kill(victim)
    others = [member.name for member in cluster.running()]
    return cluster.run_until_true(
        lambda: cluster.all_see(victim, {NodeStatus.DEAD}, others), timeout=60.0, step=0.01
    )


def delay_spikes(cluster: SimCluster, rng: random.Random, seconds: float) -> None:
    """Every 10-30 s the whole network slows down for 0.5-3 s: one-way delays drawn from
    [d, 2d], d uniform in [0.1 s, 0.5 s] (round trips of 0.2-2 s), then back to normal."""
    normal = cluster.network.delay
    at = cluster.now
    while True:
        at += rng.uniform(10.0, 30.0)
        if at >= cluster.now + seconds:
            return
        length = rng.uniform(0.5, 3.0)
        low = rng.uniform(0.1, 0.5)

        def slow(low: float = low) -> None:
            cluster.network.delay = (low, 2.0 * low)

        def restore() -> None:
            cluster.network.delay = normal

        cluster.at(at, slow)
        cluster.at(at + length, restore)
        at += length


@dataclass(slots=True)
class FalsePositives:
    declared: int = 0
    events: int = 0
    suspicions: int = 0


def false_positives(
    config: GossipConfig, scenario: str, n: int, seconds: float, seed: int
) -> FalsePositives:
    """Nobody dies: every suspicion timer that expires into a declaration is false.

    ``loss``: 10 % of datagrams lost. ``spikes``: :func:`delay_spikes`. ``starve:B``:
    five members handle their input late (:class:`ReceiveLag`, lag bound B seconds).
    """
    cluster = SimCluster(
        config, seed=seed, record_events=False, loss=0.10 if scenario == "loss" else 0.0
    )
    cluster.bootstrap(n)
    rng = random.Random(seed)
    result = FalsePositives()

    def on_event(_when: float, _observer: str, effect: object) -> None:
        if isinstance(effect, MemberLeft) and not effect.left:
            result.events += 1

    cluster.listeners.append(on_event)
    if scenario == "spikes":
        delay_spikes(cluster, rng, seconds)
    elif scenario.startswith("starve:"):
        bound = float(scenario.partition(":")[2])
        for index in sorted(rng.sample(range(n), 5)):
            core = cluster.members[f"node-{index:04d}"].core
            ReceiveLag(core, random.Random(rng.getrandbits(64)), 0.1, bound, now=cluster.now)
    cluster.run_for(seconds)
    for member in cluster.members.values():
        result.declared += member.core.stats.members_declared_dead
        result.suspicions += member.core.stats.suspicions_raised
    return result


def part_detection(quick: bool) -> None:
    kills = 40 if quick else 150
    print(
        f"== Detection: kill one member of a settled cluster; seconds until every other sees "
        f"it dead\n   ({kills} kills per N, seeded; lan profile) =="
    )
    print(f"{'N':>4}  {'mode':<20} {'median':>7} {'mean':>6} {'p90':>6}  vs memberlist timing")
    for n in (5, 10, 50):
        baseline = 0.0
        for mode, overrides in DETECTION_MODES.items():
            config = GossipConfig.lan(**overrides)
            times = [t for t in (detection_time(config, n, s) for s in range(kills)) if t]
            times.sort()
            median = statistics.median(times)
            baseline = baseline or median
            print(
                f"{n:>4}  {mode:<20} {median:>6.2f}s {statistics.mean(times):>5.2f}s "
                f"{times[int(0.9 * len(times))]:>5.2f}s  {median / baseline:.2f}x"
                + ("" if len(times) == kills else f"  ({kills - len(times)} not detected)")
            )
    n, seconds = (30, 120.0) if quick else (50, 300.0)
    seeds = SEEDS[:2] if quick else SEEDS
    print(
        f"\n== False declarations: {n} members, {seconds:.0f} virtual s, nobody dies; sums "
        f"over seeds {list(seeds)} ==\n"
        "   declared = suspicion timers expired into a declaration, anywhere\n"
        "   events   = member-failed events, anywhere; suspicions = suspicions started"
    )
    scenarios = {
        "10% loss": "loss",
        "delay spikes": "spikes",
        "starved, lag <= 3 s": "starve:3",
        "starved, lag <= 10 s": "starve:10",
    }
    for label, scenario in scenarios.items():
        print(f"-- {label}")
        for mode, overrides in DETECTION_MODES.items():
            config = GossipConfig.lan(**overrides)
            runs = [false_positives(config, scenario, n, seconds, seed) for seed in seeds]
            print(
                f"  {mode:<20} declared {sum(r.declared for r in runs):>5} "
                f"{[r.declared for r in runs]}, events {sum(r.events for r in runs):>5}, "
                f"suspicions {sum(r.suspicions for r in runs):>6}"
            )


# ---------------------------------------------------------------------- main


def part_convergence(quick: bool) -> None:
    config = GossipConfig.lan()
    print("== Convergence of one update (lan profile) ==")
    print(f"{'N':>6} {'sim 99.99%':>11} {'sim 100%':>9} {'model 99.99%':>13} {'model 100%':>11}")
    for n in (100, 300) if quick else (100, 1000):
        t9999, t100 = convergence(n, seed=n)
        m9999 = serf_model_time(n, 0.9999, config.gossip_nodes, config.gossip_interval)
        m100 = serf_model_time(n, 1 - 1 / (2 * n), config.gossip_nodes, config.gossip_interval)
        print(f"{n:>6} {_fmt(t9999):>11} {_fmt(t100):>9} {m9999:>12.2f}s {m100:>10.2f}s")
    print(
        "  (model 100% = fraction 1 - 1/(2N); interval "
        f"{config.gossip_interval}s, fanout {config.gossip_nodes})"
    )


def part_cost(quick: bool) -> None:
    print("== Cost ==")
    n = 300 if quick else 1000
    wall, events = wall_time(n, 60.0, seed=1)
    print(
        f"{n} members x 60 virtual s: {wall:.1f} s wall, {events} events, "
        f"{events / wall:,.0f} events/s (goal: < 10 s for 1000)"
    )


def part_lifeguard(quick: bool) -> None:
    n, starved, seconds = (30, 3, 300.0) if quick else (50, 5, 600.0)
    seeds = SEEDS[:2] if quick else SEEDS
    print("== False positives under CPU starvation, Lifeguard on and off (nobody is killed) ==")
    print(
        f"{n} members, {starved} starved, {seconds:.0f} virtual s, sums over seeds "
        f"{list(seeds)}. A starved member handles its input\nlate (lag log-uniform in "
        "[0.1 s, bound], redrawn every 2-10 s); its timers run. Every declaration is false.\n"
        "  declared = suspicion timers expired into a declaration (by healthy / by starved)\n"
        "  events   = member-failed events anywhere (about healthy / about starved members)\n"
        "  suspects = suspicions started (by healthy / by starved members)"
    )
    for bound in (1.0, 3.0, 10.0):
        print(f"-- lag bound {bound:g} s")
        totals: dict[bool, StarvationResult] = {}
        for lifeguard in (False, True):
            total = StarvationResult()
            for seed in seeds:
                r = starvation_false_positives(
                    lifeguard, n, starved, seconds, seed=seed, lag=(0.1, bound)
                )
                total.declared_by_healthy += r.declared_by_healthy
                total.declared_by_starved += r.declared_by_starved
                total.events_about_healthy += r.events_about_healthy
                total.events_about_starved += r.events_about_starved
                total.suspicions_by_healthy += r.suspicions_by_healthy
                total.suspicions_by_starved += r.suspicions_by_starved
            totals[lifeguard] = total
            print(
                f"  Lifeguard {'on ' if lifeguard else 'off'}: declared {total.declarations:>5} "
                f"({total.declared_by_healthy}/{total.declared_by_starved}), events "
                f"{total.events_about_healthy}/{total.events_about_starved}, suspects "
                f"{total.suspicions:>6} ({total.suspicions_by_healthy}/"
                f"{total.suspicions_by_starved})",
                flush=True,
            )
        off, on = totals[False], totals[True]
        print(
            f"  off/on: declared {_ratio(off.declarations, on.declarations)}, events about "
            f"healthy {_ratio(off.events_about_healthy, on.events_about_healthy)}, suspects "
            f"{_ratio(off.suspicions, on.suspicions)}"
        )


PARTS: dict[str, Callable[[bool], None]] = {
    "convergence": part_convergence,
    "cost": part_cost,
    "lifeguard": part_lifeguard,
    "detection": part_detection,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer seeds")
    parser.add_argument(
        "--part", action="append", choices=tuple(PARTS), help="run only this part (repeatable)"
    )
    args = parser.parse_args(argv)
    for index, part in enumerate(args.part or PARTS):
        if index:
            print()
        PARTS[part](args.quick)


def _ratio(off: int, on: int) -> str:
    if on:
        return f"{off / on:.1f}x"
    return "0 both" if off == 0 else f"{off}/0"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


if __name__ == "__main__":
    main()
