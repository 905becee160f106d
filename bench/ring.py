"""Benchmark of controlplane.ring.HashRing against PyPI uhashring (ketama), same run.

Prints, for 10 and 100 nodes:
- client-side ``get_node`` lookups per second of both rings on the same nodes and
  keys, their ratio (the goal is at least 2x), and whether every sampled key got
  the same node from both;
- the spread of keys per node (max / mean, min / mean) at the default virtual
  node count;
- at fleet size (3,000 and 5,000 nodes, 40 vnodes x 4 points), the cost of one
  membership change: ``HashRing.with_changes`` adding, removing and re-weighting
  one node, and the agent's ``RingDirectory`` taking one member join, each against
  a from-scratch build of the same ring measured in the same run.

It asserts nothing and runs for a bounded time (about half a minute). Run it from
the repository root: ``.venv/bin/python bench/ring.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import uhashring

from controlplane.ring import HashRing, RingNode
from controlplane.rings.directory import RingDirectory, RingMember

LOOKUP_KEYS = 50_000
SPREAD_KEYS = 200_000
REPEATS = 5
NODE_COUNTS = (10, 100)
FLEET_SIZES = (3_000, 5_000)


def best_rate(lookup: Callable[[str], object], keys: list[str]) -> float:
    """Return the best lookups-per-second over REPEATS passes over ``keys``."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for key in keys:
            lookup(key)
        best = min(best, time.perf_counter() - started)
    return len(keys) / best


def weights_for(node_count: int, weighted: bool) -> dict[str, int]:
    return {f"node-{i:03d}": (i % 5 + 1 if weighted else 1) for i in range(node_count)}


def bench_lookups() -> None:
    print(f"get_node lookups per second (best of {REPEATS} passes over {LOOKUP_KEYS:,} keys)")
    print(f"{'nodes':>5} {'weights':>8} {'ours':>12} {'uhashring':>12} {'ratio':>6}  same node")
    keys = [f"bench-key-{number}" for number in range(LOOKUP_KEYS)]
    for node_count in NODE_COUNTS:
        for weighted in (False, True):
            weights = weights_for(node_count, weighted)
            ours = HashRing(weights)
            theirs = uhashring.HashRing(dict(weights), hash_fn="ketama")
            identical = all(ours.get_node(key) == theirs.get_node(key) for key in keys)
            our_rate = best_rate(ours.get_node, keys)
            their_rate = best_rate(theirs.get_node, keys)
            print(
                f"{node_count:>5} {'unequal' if weighted else 'equal':>8} "
                f"{our_rate:>12,.0f} {their_rate:>12,.0f} {our_rate / their_rate:>5.2f}x  "
                f"{'yes' if identical else 'NO'} ({len(keys):,} keys)"
            )


def bench_spread() -> None:
    print()
    print(f"keys per node at the default vnode count ({SPREAD_KEYS:,} keys, equal weights)")
    print(f"{'nodes':>5} {'points':>7} {'max/mean':>9} {'min/mean':>9} {'stdev/mean':>11}")
    keys = [f"spread-key-{number}" for number in range(SPREAD_KEYS)]
    for node_count in NODE_COUNTS:
        ring = HashRing(weights_for(node_count, weighted=False))
        counts = Counter(ring.get_node(key) for key in keys)
        per_node = [counts.get(node_id, 0) for node_id in ring]
        mean = statistics.fmean(per_node)
        print(
            f"{node_count:>5} {ring.point_count:>7} {max(per_node) / mean:>9.3f} "
            f"{min(per_node) / mean:>9.3f} {statistics.pstdev(per_node) / mean:>11.3f}"
        )


def bench_build() -> None:
    print()
    print("ring construction time (ms, best of 3)")
    for node_count in NODE_COUNTS:
        weights = weights_for(node_count, weighted=False)
        ours = min(_timed(partial(HashRing, weights)) for _ in range(3))
        theirs = min(
            _timed(partial(uhashring.HashRing, dict(weights), hash_fn="ketama")) for _ in range(3)
        )
        print(f"{node_count:>5} nodes: ours {ours * 1e3:7.1f}  uhashring {theirs * 1e3:7.1f}")


def bench_changes() -> None:
    print()
    print("one change at fleet size (ms; change: best of 5, full build: best of 2)")
    print(
        f"{'nodes':>5} {'weights':>8} {'full build':>10} {'add':>6} {'remove':>6} "
        f"{'reweight':>8} {'member join':>11}  full / add"
    )
    for node_count in FLEET_SIZES:
        for weighted in (False, True):
            nodes = [
                RingNode(f"10.{i // 62500}.{i // 250 % 250}.{i % 250}:11211", weight)
                for i, weight in enumerate(weights_for(node_count, weighted).values())
            ]
            full = min(_timed(partial(HashRing.from_nodes, nodes)) for _ in range(2))
            ring = HashRing.from_nodes(nodes)
            newcomer = RingNode("10.255.0.1:11211", 3 if weighted else 1)
            heavier = RingNode(nodes[7].id, nodes[7].weight + 1)
            add = _best(partial(ring.with_changes, [newcomer]))
            remove = _best(partial(ring.with_changes, (), [nodes[7].id]))
            reweight = _best(partial(ring.with_changes, [heavier]))
            join = _member_join(node_count, weighted)
            print(
                f"{node_count:>5} {'unequal' if weighted else 'equal':>8} {full * 1e3:>10.1f} "
                f"{add * 1e3:>6.2f} {remove * 1e3:>6.2f} {reweight * 1e3:>8.2f} "
                f"{join * 1e3:>11.2f}  {full / add:>6.0f}x"
            )


def _member_join(node_count: int, weighted: bool) -> float:
    """One member joining a ring of ``node_count`` members, through RingDirectory."""

    def tagged(i: int, weight: int) -> RingMember:
        tags = {"ring": "cache", "service_port": "11211", "ring_weight": str(weight)}
        return RingMember(f"m{i}", f"10.{i // 62500}.{i // 250 % 250}.{i % 250}", tags, True)

    directory = RingDirectory("bench")
    directory.set_members(
        tagged(i, weight) for i, weight in enumerate(weights_for(node_count, weighted).values())
    )
    best = float("inf")
    for round_ in range(5):
        joiner = tagged(node_count + round_, 3 if weighted else 1)
        best = min(best, _timed(partial(directory.update_members, [joiner])))
        directory.remove_members([joiner.name])
    return best


def _best(action: Callable[[], object], repeats: int = 5) -> float:
    return min(_timed(action) for _ in range(repeats))


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    print(f"Python {sys.version.split()[0]}, uhashring {uhashring_version()}")
    bench_lookups()
    bench_spread()
    bench_build()
    bench_changes()


def uhashring_version() -> str:
    from importlib.metadata import version

    return version("uhashring")


if __name__ == "__main__":
    main()
