"""Gossip core benchmarks on the deterministic simulator. Prints; asserts nothing.

    python -m bench.gossip_sim            # all three parts, a couple of minutes
    python bench/gossip_sim.py --quick    # smaller sizes

1. Convergence: time for one metadata update to reach 99.99 % and 100 % of N members,
   beside Serf's convergence model 1 / (1 + (N+1) e^(-0.5 * fanout * rounds)) at the
   same gossip interval and fanout.
2. Cost: wall time of N = 1000 members for 60 virtual seconds.
3. Lifeguard: false positives under CPU starvation with Lifeguard on and off.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import time

from controlplane.gossip import GossipConfig, MemberLeft, MemberUpdated
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


def starvation_false_positives(lifeguard: bool, n: int, starved: int, seconds: float, seed: int):
    """Count failure declarations when every member is alive but some are CPU-starved."""
    if lifeguard:
        config = GossipConfig.lan()
    else:
        # Plain SWIM: no health multiplier, fixed suspicion timeout (no confirmations).
        config = GossipConfig.lan(awareness_max_multiplier=1, suspicion_max_timeout_mult=1)
    cluster = SimCluster(config, seed=seed, record_events=False)
    cluster.bootstrap(n)
    rng = random.Random(seed)
    victims = [f"node-{index:04d}" for index in rng.sample(range(n), starved)]
    declarations = {"healthy": 0, "starved": 0, "by_starved": 0}
    starved_set = set(victims)

    def on_event(_when: float, observer: str, effect: object) -> None:
        if isinstance(effect, MemberLeft) and not effect.left:
            kind = "starved" if effect.member.name in starved_set else "healthy"
            declarations[kind] += 1
            if observer in starved_set:
                declarations["by_starved"] += 1

    cluster.listeners.append(on_event)

    def starve(name: str) -> None:
        # Long stalls with short bursts of progress: a member whose event handling keeps
        # falling behind (CPU exhaustion, GC pauses, a saturated runtime).
        stall = rng.uniform(0.5, 5.0)
        cluster.stall(name, stall)
        cluster.at(cluster.now + stall + rng.uniform(0.05, 0.3), lambda: starve(name))

    for name in victims:
        cluster.at(cluster.now + rng.uniform(0.0, 1.0), functools.partial(starve, name))
    cluster.run_for(seconds)
    return declarations


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

    print("\n== False positives under CPU starvation (all members alive) ==")
    n, starved, seconds = (30, 3, 300.0) if args.quick else (50, 5, 600.0)
    results = {}
    for lifeguard in (False, True):
        results[lifeguard] = starvation_false_positives(lifeguard, n, starved, seconds, seed=42)
        label = "Lifeguard on " if lifeguard else "Lifeguard off"
        d = results[lifeguard]
        print(
            f"{label}: {d['healthy'] + d['starved']:>5} failure declarations "
            f"(about healthy members {d['healthy']}, about starved {d['starved']}; "
            f"made by starved members {d['by_starved']})"
        )
    off = results[False]["healthy"] + results[False]["starved"]
    on = results[True]["healthy"] + results[True]["starved"]
    ratio = off / on if on else math.inf
    healthy_ratio = (
        results[False]["healthy"] / results[True]["healthy"]
        if results[True]["healthy"]
        else math.inf
    )
    print(
        f"ratio off/on: all {ratio:.1f}x, about healthy members {healthy_ratio:.1f}x "
        f"(goal: >= 20x); {n} members, {starved} starved, {seconds:.0f} virtual s"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


if __name__ == "__main__":
    main()
