"""Fleet-scale gossip on the simulator: what one member costs at N = 100 to 10,000.

Prints; asserts nothing; writes ``docs/scale/sim.json`` for ``bench/scale_report.py``.

    python bench/fleet_sim.py             # N = 100, 1,000, 5,000, 10,000: ~10 min, 15 GB
    python bench/fleet_sim.py --quick     # N = 100, 300, 1,000: about a minute
    python bench/fleet_sim.py --sizes 100 2000 --seeds 2 --out /tmp/sim.json

For each N, on memberlist's ``lan`` profile with no loss, one cluster per seed:

1. idle: traffic per member (UDP datagram bytes, push-pull frame bytes) and the time
   the simulation spends per member per virtual second, split into the core's
   probe-and-gossip path, its periodic reconnect/reap scans, push-pull, and the
   simulator itself;
2. convergence: one metadata update reaching 99.99 % and 100 % of the members, with
   the core as is and again with gossip held to each member's GossipInterval ticks,
   as memberlist's ticker does (see ``MeteredNode._hold_gossip``);
3. detection: a member is killed; time until the first member declares it dead and
   until every member sees it dead.
It also prints memberlist's scaling formulas per N (suspicion timeouts, retransmit
limit, push-pull interval).

How the cluster is started, and why (a simulation of N members holds N full views,
N^2 member records in one process; at 10,000 that is 10^8 records, about 15 GB):

- Members start with a full view by writing the node records straight into each
  core, as a restore would. ``SimCluster.bootstrap`` restores through
  ``GossipNode.restore``, which costs ~13 us per record: over 20 minutes at 10,000
  members, against about a minute here.
- Each member's probe order is a random permutation drawn with numpy; the core's own
  reshuffle (pure Python, ~0.6 us per record) would add a minute at 10,000. The
  core reshuffles on its own after each round as usual.
- Push-pull and reconnect timers are spread uniformly over their (scaled) intervals,
  the phase a long-running cluster is in. The core schedules its first push-pull
  within the unscaled 30 s (memberlist waits a stagger *plus* the scaled interval),
  which at 10,000 members would put 10x the steady rate into the first 30 s.
- The simulated heap is frozen out of Python's cyclic GC (``gc.freeze``): a real
  agent holds N records, not N^2, and should not be charged for scanning them.
- During the convergence and detection phases, the cores' push-pull record caches are
  emptied every few virtual seconds to bound memory; they only save encoding work, so
  the timings of those phases (which are virtual) do not change.

Each (N, seed) runs in a child process, so memory is returned and peak RSS is per run.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from controlplane.gossip import Effect, GossipConfig, GossipNode, MemberLeft, MemberUpdated
from controlplane.gossip.effects import SendPacket
from controlplane.gossip.formulas import (
    expected_confirmations,
    push_pull_scale,
    retransmit_limit,
    suspicion_bounds,
)
from controlplane.gossip.state import Address, NodeState, NodeStatus
from controlplane.membership.tags import encode_tags
from controlplane.testing.sim import SimCluster, SimMember

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "scale" / "sim.json"
FULL_SIZES = (100, 1000, 5000, 10000)
QUICK_SIZES = (100, 300, 1000)
# Virtual seconds after the start before anything is measured: every member has made
# its first probe and its own start-up alive broadcast has run out of retransmits.
WARMUP = 3.0
# How often the record caches are emptied in the event phases (virtual seconds).
TRIM_EVERY = 5.0
# The tags an agent publishes (agent.agent_tags: role, API version, rank), so records
# and push-pull states have an agent's size rather than an empty core's.
META = encode_tags({"role": "server", "api_version": "1", "rank": "0"})
NEW_META = encode_tags({"role": "server", "api_version": "1", "rank": "0", "version": "2"})


# ---------------------------------------------------------------------------- metering


@dataclass(slots=True)
class Meter:
    """Counters of one measured window: bytes on the simulated wire and core time."""

    udp_packets: int = 0
    udp_bytes: int = 0
    push_pull_exchanges: int = 0
    push_pull_bytes: int = 0
    # Seconds (perf_counter) spent inside the core's entry points, and the parts of it
    # spent on push-pull and on the periodic reconnect/reap scans of the node map.
    core_s: float = 0.0
    push_pull_s: float = 0.0
    scans_s: float = 0.0
    # Emulate memberlist's gossip ticker (see MeteredNode._hold_gossip); off: the core as is.
    ticker: bool = False

    def reset(self) -> None:
        for name in self.__slots__:
            setattr(self, name, type(getattr(self, name))())


class MeteredNode(GossipNode):
    """A core that times its entry points and counts push-pull frames.

    The entry points are the simulator's calls; ``_periodic_push_pull``, ``_reconnect``
    and ``_reap`` run inside ``tick`` and are timed again to split that time.
    """

    def __init__(self, meter: Meter, *args: Any, **kwargs: Any) -> None:
        self.meter = meter
        super().__init__(*args, **kwargs)

    def _hold_gossip(self, now: float) -> None:
        """With ``meter.ticker``: gossip only at the member's GossipInterval ticks.

        memberlist gossips from a ticker that fires every GossipInterval whatever the
        queue holds, so a broadcast that arrives waits for the next tick. The core
        only advances its gossip deadline while it has something queued, so at idle
        the deadline falls behind and the next broadcast is gossiped the moment it
        arrives, every hop at network latency. Ticks that passed while the queue was
        empty sent nothing: move the deadline to the first tick not before ``now``.
        """
        if self.meter.ticker and not self._queue and self._next_gossip < now:
            interval = self.config.gossip_interval
            self._next_gossip += interval * math.ceil((now - self._next_gossip) / interval)

    def tick(self, now: float) -> list[Effect]:
        self._hold_gossip(now)
        started = time.perf_counter()
        effects = super().tick(now)
        self.meter.core_s += time.perf_counter() - started
        return effects

    def receive_packet(self, src: Address, data: bytes, now: float) -> list[Effect]:
        self._hold_gossip(now)
        started = time.perf_counter()
        effects = super().receive_packet(src, data, now)
        self.meter.core_s += time.perf_counter() - started
        return effects

    def handle_push_pull(
        self, src: Address, request: bytes, now: float
    ) -> tuple[bytes, list[Effect]]:
        self._hold_gossip(now)
        started = time.perf_counter()
        response, effects = super().handle_push_pull(src, request, now)
        elapsed = time.perf_counter() - started
        meter = self.meter
        meter.core_s += elapsed
        meter.push_pull_s += elapsed
        # Both frames of the exchange are counted here, where both are known.
        meter.push_pull_exchanges += 1
        meter.push_pull_bytes += len(request) + len(response)
        return response, effects

    def push_pull_response(self, src: Address, response: bytes | None, now: float) -> list[Effect]:
        self._hold_gossip(now)
        started = time.perf_counter()
        effects = super().push_pull_response(src, response, now)
        elapsed = time.perf_counter() - started
        self.meter.core_s += elapsed
        self.meter.push_pull_s += elapsed
        return effects

    def _periodic_push_pull(self, now: float, effects: list[Effect]) -> None:
        started = time.perf_counter()
        super()._periodic_push_pull(now, effects)
        self.meter.push_pull_s += time.perf_counter() - started

    def _reconnect(self, now: float, effects: list[Effect]) -> None:
        started = time.perf_counter()
        super()._reconnect(now, effects)
        self.meter.scans_s += time.perf_counter() - started

    def _reap(self, now: float, effects: list[Effect]) -> None:
        started = time.perf_counter()
        super()._reap(now, effects)
        self.meter.scans_s += time.perf_counter() - started


class MeteredCluster(SimCluster):
    """A ``SimCluster`` of :class:`MeteredNode` cores that counts the datagrams they send."""

    def __init__(self, meter: Meter, config: GossipConfig, *, seed: int) -> None:
        self.meter = meter
        super().__init__(config, seed=seed, record_events=False)

    def _make_core(self, name: str, address: Address, meta: bytes) -> GossipNode:
        # As SimCluster._make_core, without encryption or label (not used here).
        return MeteredNode(
            self.meter,
            self.config,
            name,
            address,
            meta=meta,
            rng=random.Random(self._rng.getrandbits(64)),
            now=self.now,
        )

    def _apply(self, member: SimMember, effects: Sequence[object]) -> None:
        meter = self.meter
        for effect in effects:
            if isinstance(effect, SendPacket):
                meter.udp_packets += 1
                meter.udp_bytes += len(effect.data)
        super()._apply(member, effects)


# ---------------------------------------------------------------------------- starting


def start_converged(cluster: MeteredCluster, n: int, seed: int) -> None:
    """Start ``n`` members that already know each other (see the module docstring)."""
    names = [f"node-{index:05d}" for index in range(n)]
    for name in names:
        cluster.add_node(name, meta=META)
    members = [cluster.members[name] for name in names]
    addresses = [member.address for member in members]
    now = cluster.now
    permutations = np.random.default_rng(seed)
    # 10^8 new objects at 10,000 members: generation-2 collections over a heap that
    # only grows would cost more than building it.
    gc.disable()
    try:
        for index, member in enumerate(members):
            perm = permutations.permutation(n)
            order = perm[perm != index].tolist()
            order_names = [names[i] for i in order]
            order_addresses = [addresses[i] for i in order]
            # The same records restore() would leave: alive, incarnation 1, our meta.
            states = list(
                map(
                    NodeState,
                    order_names,
                    order_addresses,
                    repeat(META),
                    repeat(1),
                    repeat(NodeStatus.ALIVE),
                    repeat(now),
                )
            )
            core = member.core
            core._nodes.update(zip(order_names, states, strict=True))
            core._node_list.extend(states)
            # The node list is already in random order, and a fresh probe round is a
            # random permutation of it: what _reset_probe_order would build.
            core._probe_order = list(states)
            core._probe_index = 0
    finally:
        gc.freeze()
        gc.enable()


def spread_timers(cluster: MeteredCluster, rng: random.Random) -> None:
    """Put push-pull and reconnect timers at uniform phases of their intervals."""
    config = cluster.config
    now = cluster.now
    interval = push_pull_scale(config.push_pull_interval, len(cluster.members))
    for member in cluster.members.values():
        core = member.core
        core._next_push_pull = now + rng.random() * interval
        core._next_reconnect = now + rng.random() * config.reconnect_interval
        # As SimCluster.resume does: forget the pending wake-up and schedule anew.
        member.scheduled = math.inf
        cluster._reschedule(member)


def trim_caches(cluster: MeteredCluster) -> None:
    for member in cluster.members.values():
        cache = getattr(member.core, "_record_cache", None)
        if cache:
            cache.clear()


def run_until(
    cluster: MeteredCluster, done: Callable[[], bool], timeout: float, step: float
) -> None:
    """Run until ``done()`` or ``timeout`` virtual seconds, emptying caches as it goes."""
    start = cluster.now
    next_trim = start + TRIM_EVERY
    while not done() and cluster.now - start < timeout:
        cluster.run_for(step)
        if cluster.now >= next_trim:
            trim_caches(cluster)
            next_trim += TRIM_EVERY


# ---------------------------------------------------------------------------- one run


def idle_window(n: int) -> float:
    """Virtual seconds measured at idle: shorter for large N, where each costs more."""
    return 20.0 if n <= 1000 else 10.0


def warm_push_pull(cluster: MeteredCluster, rng: random.Random, pairs: int = 5) -> float:
    """Seconds of one push-pull exchange between members whose caches are warm.

    A long-running cluster reuses each record's encoding; the measured window mostly
    sees first exchanges, which encode every record. Each pair exchanges once to warm
    up, then the exchange is timed (request, serve, merge of the answer).
    """
    names = sorted(cluster.members)
    timings: list[float] = []
    for _ in range(pairs):
        a_name, b_name = rng.sample(names, 2)
        a, b = cluster.members[a_name].core, cluster.members[b_name].core
        now = cluster.now
        for attempt in range(2):
            started = time.perf_counter()
            request = a.push_pull_reply()
            response, _effects = b.handle_push_pull(a.address, request, now)
            a.push_pull_response(b.address, response, now)
            if attempt:
                timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def run_one(n: int, seed: int) -> dict[str, Any]:
    """Start, measure and break one cluster; the result as JSON-ready data."""
    config = GossipConfig.lan()
    meter = Meter()
    rng = random.Random(seed)
    load_before = os.getloadavg()[0]
    cluster = MeteredCluster(meter, config, seed=seed)
    started = time.perf_counter()
    start_converged(cluster, n, seed)
    spread_timers(cluster, rng)
    start_s = time.perf_counter() - started
    _progress(f"n={n} seed={seed}: started in {start_s:.1f} s")

    warm_started = time.perf_counter()
    cluster.run_for(WARMUP)
    warmup_s = time.perf_counter() - warm_started

    # -- idle
    window = idle_window(n)
    meter.reset()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    cluster.run_for(window)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    member_seconds = n * window
    state_bytes = len(cluster.members["node-00000"].core.push_pull_reply())
    pp_interval = push_pull_scale(config.push_pull_interval, n)
    idle = {
        "virtual_s": window,
        "wall_s": wall,
        "cpu_s": cpu,
        "udp_packets_per_member_s": meter.udp_packets / member_seconds,
        "udp_bytes_per_member_s": meter.udp_bytes / member_seconds,
        "push_pull_exchanges": meter.push_pull_exchanges,
        "push_pull_bytes_per_member_s": meter.push_pull_bytes / member_seconds,
        # Each member starts one exchange per interval; each moves two states.
        "push_pull_bytes_per_member_s_expected": 2 * state_bytes / pp_interval,
        "bytes_per_member_s": (meter.udp_bytes + meter.push_pull_bytes) / member_seconds,
        "state_bytes": state_bytes,
        "wall_us_per_member_s": 1e6 * wall / member_seconds,
        "cpu_us_per_member_s": 1e6 * cpu / member_seconds,
        "core_us_per_member_s": 1e6 * meter.core_s / member_seconds,
        "probe_gossip_us_per_member_s": 1e6
        * (meter.core_s - meter.push_pull_s - meter.scans_s)
        / member_seconds,
        "scans_us_per_member_s": 1e6 * meter.scans_s / member_seconds,
        "push_pull_us_per_member_s": 1e6 * meter.push_pull_s / member_seconds,
        "simulator_us_per_member_s": 1e6 * (wall - meter.core_s) / member_seconds,
    }
    # After the window's counters are read: these exchanges go through the meter too.
    exchange_s = warm_push_pull(cluster, rng)
    idle["push_pull_exchange_warm_ms"] = 1e3 * exchange_s
    idle["push_pull_steady_us_per_member_s"] = 1e6 * exchange_s / pp_interval
    _progress(f"n={n} seed={seed}: idle {window:.0f} virtual s in {wall:.1f} s")

    # -- convergence of one metadata update: the core as is, then with a gossip ticker
    names = sorted(cluster.members)
    subject, ticked_subject, victim = rng.sample(names, 3)
    convergence = converge(cluster, subject, NEW_META)
    _progress(f"n={n} seed={seed}: convergence {convergence}")
    meter.ticker = True
    ticked = converge(cluster, ticked_subject, NEW_META)
    meter.ticker = False
    _progress(f"n={n} seed={seed}: convergence with a gossip ticker {ticked}")
    others = n - 1

    # -- detection of a killed member
    _minimum, maximum = suspicion_bounds(
        config.suspicion_mult, config.suspicion_max_timeout_mult, n, config.probe_interval
    )
    seen_dead: set[str] = set()
    first_dead: list[float] = []
    suspicions_before = _suspicions(cluster)
    first_suspect: list[float] = []
    killed_at = cluster.now

    def on_left(when: float, observer: str, effect: Effect) -> None:
        if isinstance(effect, MemberLeft) and effect.member.name == victim and not effect.left:
            if not first_dead:
                first_dead.append(when - killed_at)
            seen_dead.add(observer)
            if len(seen_dead) == others:
                all_dead.append(when - killed_at)

    def detected() -> bool:
        if not first_suspect and _suspicions(cluster) > suspicions_before:
            first_suspect.append(cluster.now - killed_at)
        return bool(all_dead)

    all_dead: list[float] = []
    cluster.listeners.append(on_left)
    det_started = time.perf_counter()
    cluster.kill(victim)
    run_until(cluster, detected, timeout=maximum + 30.0, step=0.1)
    cluster.listeners.remove(on_left)
    detection = {
        "first_suspect_s": first_suspect[0] if first_suspect else None,
        "first_dead_s": first_dead[0] if first_dead else None,
        "all_dead_s": all_dead[0] if all_dead else None,
        "seen_dead": len(seen_dead),
        "of": others,
        "wall_s": time.perf_counter() - det_started,
    }
    _progress(f"n={n} seed={seed}: detection {detection}")

    return {
        "n": n,
        "seed": seed,
        "start_s": start_s,
        "warmup_s": warmup_s,
        "wall_s": time.perf_counter() - started,
        "virtual_s": cluster.now,
        "events": cluster.events_processed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "idle": idle,
        "convergence": convergence,
        "convergence_ticker": ticked,
        "detection": detection,
    }


def converge(cluster: MeteredCluster, subject: str, meta: bytes) -> dict[str, Any]:
    """Times for ``subject``'s new metadata to reach 99.99 % and 100 % of the others.

    Starts once every broadcast queue is empty, so the update spreads through an idle
    cluster and nothing earlier is still being gossiped.
    """
    run_until(cluster, lambda: not _queued(cluster), timeout=30.0, step=0.5)
    reached: list[float] = []
    began = cluster.now

    def on_update(when: float, _observer: str, effect: Effect) -> None:
        if isinstance(effect, MemberUpdated) and effect.member.name == subject:
            reached.append(when - began)

    others = len(cluster.members) - 1
    cluster.listeners.append(on_update)
    started = time.perf_counter()
    cluster.update_meta(subject, meta)
    run_until(cluster, lambda: len(reached) >= others, timeout=30.0, step=0.05)
    cluster.listeners.remove(on_update)
    reached.sort()
    needed = math.ceil(0.9999 * others)
    return {
        "t9999_s": reached[needed - 1] if len(reached) >= needed else None,
        "t100_s": reached[others - 1] if len(reached) >= others else None,
        "reached": len(reached),
        "of": others,
        "wall_s": time.perf_counter() - started,
    }


def _queued(cluster: MeteredCluster) -> int:
    return sum(member.core.broadcast_queue_depth for member in cluster.members.values())


def _suspicions(cluster: MeteredCluster) -> int:
    return sum(member.core.stats.suspicions_raised for member in cluster.members.values())


def _progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- formulas


def serf_model_time(n: int, fraction: float, fanout: int, interval: float) -> float:
    """Seconds for Serf's convergence model to reach ``fraction`` of ``n`` members
    (1 / (1 + (N+1) e^(-0.5 fanout rounds)), as in bench/gossip_sim.py)."""
    rounds = 2.0 * math.log((n + 1) / (1.0 / fraction - 1.0)) / fanout
    return rounds * interval


def formulas(config: GossipConfig, n: int) -> dict[str, float]:
    minimum, maximum = suspicion_bounds(
        config.suspicion_mult, config.suspicion_max_timeout_mult, n, config.probe_interval
    )
    fanout, interval = config.gossip_nodes, config.gossip_interval
    return {
        "suspicion_min_s": minimum,
        "suspicion_max_s": maximum,
        "confirmations": expected_confirmations(config.suspicion_mult, n),
        "retransmit_limit": retransmit_limit(config.retransmit_mult, n),
        "push_pull_interval_s": push_pull_scale(config.push_pull_interval, n),
        "model_t9999_s": serf_model_time(n, 0.9999, fanout, interval),
        "model_t100_s": serf_model_time(n, 1 - 1 / (2 * n), fanout, interval),
    }


# ---------------------------------------------------------------------------- driver


def run_child(n: int, seed: int) -> dict[str, Any]:
    """Run one (N, seed) in a fresh interpreter: its memory goes back when it exits."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(n), str(seed)],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds of every number in the runs (None when any run lacks it)."""
    summary: dict[str, Any] = {}
    for section in ("idle", "convergence", "convergence_ticker", "detection"):
        values: dict[str, float | None] = {}
        for key in runs[0][section]:
            column = [run[section][key] for run in runs]
            if all(isinstance(value, int | float) for value in column):
                values[key] = statistics.median(column)
            else:
                values[key] = None
        summary[section] = values
    summary["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    summary["wall_s"] = statistics.median(run["wall_s"] for run in runs)
    return summary


def seeds_for(n: int, override: int | None) -> list[int]:
    count = override if override is not None else (3 if n <= 1000 else 1)
    return [n + index for index in range(count)]


def print_tables(results: list[dict[str, Any]]) -> None:
    print("\n== Formulas (lan profile: memberlist DefaultLANConfig) ==")
    print(
        f"{'N':>6} {'suspicion min':>14} {'max':>6} {'confirm':>8} {'retransmits':>12} "
        f"{'push-pull every':>16}"
    )
    for result in results:
        f = result["formulas"]
        print(
            f"{result['n']:>6} {f['suspicion_min_s']:>13.1f}s {f['suspicion_max_s']:>5.1f}s "
            f"{f['confirmations']:>8} {f['retransmit_limit']:>12} "
            f"{f['push_pull_interval_s']:>15.0f}s"
        )

    print("\n== Convergence of one metadata update (median [min-max] over seeds) ==")
    print(
        f"{'N':>6} {'seeds':>5} {'core 99.99 %':>20} {'core 100 %':>20} "
        f"{'ticker 99.99 %':>20} {'ticker 100 %':>20} {'model 99.99 %':>14}"
    )
    for result in results:
        runs = result["runs"]
        print(
            f"{result['n']:>6} {len(runs):>5} {_spread(runs, 'convergence', 't9999_s'):>20} "
            f"{_spread(runs, 'convergence', 't100_s'):>20} "
            f"{_spread(runs, 'convergence_ticker', 't9999_s'):>20} "
            f"{_spread(runs, 'convergence_ticker', 't100_s'):>20} "
            f"{result['formulas']['model_t9999_s']:>13.2f}s"
        )
    print(
        "  core: the core as is (an idle member gossips a new broadcast the moment it arrives);\n"
        "  ticker: gossip only on each member's 200 ms ticks, as memberlist does; model: Serf's\n"
        "  convergence model at the same interval and fanout."
    )

    print("\n== Detection of a killed member (median [min-max]) ==")
    print(f"{'N':>6} {'first suspects':>20} {'first declares dead':>20} {'all see dead':>20}")
    for result in results:
        runs = result["runs"]
        print(
            f"{result['n']:>6} {_spread(runs, 'detection', 'first_suspect_s'):>20} "
            f"{_spread(runs, 'detection', 'first_dead_s'):>20} "
            f"{_spread(runs, 'detection', 'all_dead_s'):>20}"
        )

    print("\n== Idle traffic per member (bytes per second, medians) ==")
    print(
        f"{'N':>6} {'UDP pkt/s':>10} {'UDP B/s':>9} {'push-pull B/s':>14} {'(expected)':>11} "
        f"{'total B/s':>10} {'state KB':>9} {'exchanges':>10}"
    )
    for result in results:
        idle = result["summary"]["idle"]
        print(
            f"{result['n']:>6} {idle['udp_packets_per_member_s']:>10.2f} "
            f"{idle['udp_bytes_per_member_s']:>9.0f} {idle['push_pull_bytes_per_member_s']:>14.0f} "
            f"{idle['push_pull_bytes_per_member_s_expected']:>11.0f} "
            f"{idle['bytes_per_member_s']:>10.0f} {idle['state_bytes'] / 1024:>9.1f} "
            f"{idle['push_pull_exchanges']:>10.0f}"
        )

    print("\n== Time per member per virtual second at idle (microseconds, medians) ==")
    print(
        f"{'N':>6} {'probe+gossip':>13} {'scans':>7} {'push-pull':>10} {'pp steady':>10} "
        f"{'simulator':>10} {'wall':>7} {'CPU':>7}"
    )
    for result in results:
        idle = result["summary"]["idle"]
        print(
            f"{result['n']:>6} {idle['probe_gossip_us_per_member_s']:>13.1f} "
            f"{idle['scans_us_per_member_s']:>7.1f} {idle['push_pull_us_per_member_s']:>10.1f} "
            f"{idle['push_pull_steady_us_per_member_s']:>10.1f} "
            f"{idle['simulator_us_per_member_s']:>10.1f} {idle['wall_us_per_member_s']:>7.1f} "
            f"{idle['cpu_us_per_member_s']:>7.1f}"
        )
    print(
        "  probe+gossip: the core's probe, ack, gossip and timer work; scans: its periodic\n"
        "  reconnect/reap passes over the node map; push-pull: exchanges in the window (mostly\n"
        "  first exchanges, which encode every record); pp steady: a warm exchange / interval;\n"
        "  simulator: event heap and network; wall and CPU: the whole simulation."
    )

    print("\n== Runs ==")
    print(
        f"{'N':>6} {'seed':>6} {'start':>7} {'total wall':>11} {'virtual':>8} {'events':>11} "
        f"{'peak RSS':>9} {'load':>10}"
    )
    for result in results:
        for run in result["runs"]:
            print(
                f"{run['n']:>6} {run['seed']:>6} {run['start_s']:>6.1f}s {run['wall_s']:>10.1f}s "
                f"{run['virtual_s']:>7.1f}s {run['events']:>11,} {run['peak_rss_mb']:>7.0f}MB "
                f"{run['load_before']:>4.1f}->{run['load_after']:<4.1f}"
            )


def _spread(runs: list[dict[str, Any]], section: str, key: str) -> str:
    values = [run[section][key] for run in runs]
    found = [value for value in values if value is not None]
    missing = len(values) - len(found)
    if not found:
        return "not reached"
    text = f"{statistics.median(found):.2f}s"
    if len(found) > 1:
        text += f" [{min(found):.2f}-{max(found):.2f}]"
    if missing:
        text += f" ({missing} not)"
    return text


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N = 100, 300, 1,000")
    parser.add_argument("--sizes", type=int, nargs="+", help="cluster sizes to run")
    parser.add_argument("--seeds", type=int, help="seeds per size (default 3 up to 1,000, else 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--child", type=int, nargs=2, metavar=("N", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = run_one(*args.child)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        # Skip tearing down 10^8 objects one by one: the process is done.
        os._exit(0)

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    config = GossipConfig.lan()
    began = time.perf_counter()
    results: list[dict[str, Any]] = []
    for n in sizes:
        seeds = seeds_for(n, args.seeds)
        print(f"N = {n:,}: seeds {seeds}", flush=True)
        runs = [run_child(n, seed) for seed in seeds]
        results.append(
            {
                "n": n,
                "seeds": seeds,
                "formulas": formulas(config, n),
                "runs": runs,
                "summary": summarize(runs),
            }
        )
    total = time.perf_counter() - began
    print_tables(results)
    print(f"\nTotal wall time {total:.0f} s on {os.cpu_count()} CPUs (shared: see load).")
    single = [result["n"] for result in results if len(result["seeds"]) == 1]
    if single:
        print(f"One seed only for N = {', '.join(f'{n:,}' for n in single)} (wall time).")

    document = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/fleet_sim.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "machine": machine(),
        "profile": "lan",
        "config": {
            key: value
            for key, value in asdict(config).items()
            if isinstance(value, int | float | bool)
        },
        "warmup_s": WARMUP,
        "meta_bytes": len(META),
        "total_wall_s": total,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
