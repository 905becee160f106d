"""Gossip core benchmarks on the deterministic simulator. Prints; asserts nothing.

    python -m bench.gossip_sim            # all three parts, a couple of minutes
    python bench/gossip_sim.py --quick    # smaller sizes

1. Convergence: time for one metadata update to reach 99.99 % and 100 % of N members,
   beside Serf's convergence model 1 / (1 + (N+1) e^(-0.5 * fanout * rounds)) at the
   same gossip interval and fanout.
2. Cost: wall time of N = 1000 members for 60 virtual seconds.
3. Lifeguard: false positives under CPU starvation with Lifeguard on and off (see
   ``ReceiveLag`` for the model and ``StarvationResult`` for what is counted).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from controlplane.gossip import Effect, GossipConfig, GossipNode, MemberLeft, MemberUpdated
from controlplane.gossip.state import Address
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


def wall_time(n: int, virtual: float, seed: int) -> tuple[float, int]:
    cluster = SimCluster(GossipConfig.lan(), seed=seed, record_events=False)
    cluster.bootstrap(n)
    started = time.perf_counter()
    cluster.run_for(virtual)
    return time.perf_counter() - started, cluster.events_processed


def lifeguard_config(lifeguard: bool) -> GossipConfig:
    """memberlist's LAN profile with the three Lifeguard components on, or all three off.

    Off is plain SWIM: the health multiplier is pinned at 1 (no LHM), the suspicion
    timeout is fixed at its minimum whatever the confirmations (no LHA-suspicion: max =
    min), and a probe of a suspect carries no suspicion (no buddy system). Nothing else
    differs: the same probe, indirect-probe, nack and dissemination paths run.
    """
    if lifeguard:
        return GossipConfig.lan()
    return GossipConfig.lan(
        awareness_max_multiplier=1, suspicion_max_timeout_mult=1, buddy_system=False
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    config = GossipConfig.lan()

    print("== Convergence of one update (lan profile) ==")
    print(f"{'N':>6} {'sim 99.99%':>11} {'sim 100%':>9} {'model 99.99%':>13} {'model 100%':>11}")
    for n in (100, 300) if args.quick else (100, 1000):
        t9999, t100 = convergence(n, seed=n)
        m9999 = serf_model_time(n, 0.9999, config.gossip_nodes, config.gossip_interval)
        m100 = serf_model_time(n, 1 - 1 / (2 * n), config.gossip_nodes, config.gossip_interval)
        print(f"{n:>6} {_fmt(t9999):>11} {_fmt(t100):>9} {m9999:>12.2f}s {m100:>10.2f}s")
    print(
        "  (model 100% = fraction 1 - 1/(2N); interval "
        f"{config.gossip_interval}s, fanout {config.gossip_nodes})"
    )

    print("\n== Cost ==")
    n = 300 if args.quick else 1000
    wall, events = wall_time(n, 60.0, seed=1)
    print(
        f"{n} members x 60 virtual s: {wall:.1f} s wall, {events} events, "
        f"{events / wall:,.0f} events/s (goal: <= 60 s for 1000)"
    )

    print("\n== False positives under CPU starvation (nobody is killed) ==")
    n, starved, seconds = (30, 3, 300.0) if args.quick else (50, 5, 600.0)
    print(
        f"{n} members, {starved} starved, {seconds:.0f} virtual s. A starved member handles its "
        "input late (lag log-uniform\nin [0.1 s, bound], redrawn every 2-10 s); its timers run. "
        "Every declaration is false: nobody dies.\n"
        "  declared = suspicion timers expired into dead (by healthy / by starved members)\n"
        "  events   = member-failed events anywhere (about healthy / about starved members)\n"
        "  suspects = suspicions started (by healthy / by starved members)"
    )
    for bound in (1.0, 3.0, 10.0):
        runs = {
            lifeguard: starvation_false_positives(
                lifeguard, n, starved, seconds, seed=42, lag=(0.1, bound)
            )
            for lifeguard in (False, True)
        }
        print(f"-- lag bound {bound:g} s")
        for lifeguard, r in runs.items():
            print(
                f"  Lifeguard {'on ' if lifeguard else 'off'}: declared {r.declarations:>5} "
                f"({r.declared_by_healthy}/{r.declared_by_starved}), events "
                f"{r.events_about_healthy}/{r.events_about_starved}, suspects {r.suspicions:>6} "
                f"({r.suspicions_by_healthy}/{r.suspicions_by_starved}), "
                f"health of starved {r.health_of_starved}"
            )
        off, on = runs[False], runs[True]
        print(
            f"  off/on: declared {_ratio(off.declarations, on.declarations)}, events about "
            f"healthy {_ratio(off.events_about_healthy, on.events_about_healthy)}, suspects "
            f"{_ratio(off.suspicions, on.suspicions)} (goal: declared >= 20x)"
        )


def _ratio(off: int, on: int) -> str:
    if on:
        return f"{off / on:.1f}x"
    return "0 both" if off == 0 else f"{off}/0"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


if __name__ == "__main__":
    main()
