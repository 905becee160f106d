"""Seeded discrete-event simulation of the election alone, with a safety checker.

N members, each an ``Election`` driven by its own drifting monotonic clock
(``offset + rate * t`` with ``|rate - 1| <= max_drift``), exchange election
messages, point to point (``Send``) and to everyone (``Broadcast``, gossiped, so
lost only when each of ``BROADCAST_COPIES`` copies is), with seeded delay, loss
and duplication of every copy.
Faults: partitions into components, kills (and restarts that keep the
persisted epoch), pauses longer than the lease (messages queue up and arrive on
resume, as a socket buffer would deliver them), rank changes. The membership
layer is modelled as a view recomputed from the true connectivity
``detection_delay`` after every change; a (re)started member has joined once it
has its first view.

After every event the checker asks each member ``is_leader(its own now)`` and
records a violation when:

* two members lead at once, are in one component (a paused process counts: it
  wakes up there), and the later of the two leaderships began after the pair
  had been up together for ``detection_delay`` since they were last connected
  (both membership views had shown each other); without quorum, leaders on two
  sides of a partition, or in the detection window just after a heal, are
  expected;
* in quorum mode, two members lead at once at all;
* a member's epoch goes down, a member's own leaderships do not get strictly
  higher epochs, or a leadership does not outrank every earlier one it must
  have heard of (any earlier one in quorum mode; one begun by a member it was
  stably connected to without quorum);
* VIEWS: a running member reports (``leader(its own now)``) a leadership whose
  lease ended more than ``max_clock_skew`` ago (real time), or one that never
  began; or the epoch it reports goes down within one run of its process. A
  lease ends when its holder's lease would run out on the holder's clock, as
  the holder last computed it (killed, paused or stepped down, the holder
  promised nothing beyond that).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controlplane.election import (
    Broadcast,
    Election,
    ElectionConfig,
    LeaderChanged,
    LeaderView,
    MemberView,
    Send,
)

ElectionFactory = Callable[..., Election]

# Independent copies of a Broadcast a member gets a chance to receive (see _send).
BROADCAST_COPIES = 3


@dataclass(frozen=True, slots=True)
class SimConfig:
    members: int = 5
    election: ElectionConfig = field(default_factory=ElectionConfig)
    # Seconds from a connectivity change until every membership view shows it.
    detection_delay: float = 2.0
    min_delay: float = 0.001
    max_delay: float = 0.05
    loss: float = 0.05
    duplicate: float = 0.02
    # Members without a rank (never eligible); quorum runs keep them at 0.
    unranked: int = 0


@dataclass(frozen=True, slots=True)
class Leadership:
    """One leadership as the checker saw it begin (real time)."""

    name: str
    epoch: int
    began: float
    incarnation: int


@dataclass(slots=True)
class _Member:
    name: str
    rank: int | None
    rate: float
    offset: float
    election: Election | None
    incarnation: int = 0
    group: int = 0
    paused_until: float | None = None
    leading_since: float | None = None
    tick_version: int = 0
    last_epoch: int = 0
    own_epoch: int = 0
    joined: bool = False
    # The highest epoch this process run has reported (views only go up).
    view_epoch: int = 0


class ElectionSim:
    """One seeded run; schedule faults, call ``run_until``, read ``violations``."""

    def __init__(
        self,
        config: SimConfig,
        seed: int,
        *,
        factory: ElectionFactory = Election,
    ) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.factory = factory
        self.now = 0.0
        self.violations: list[str] = []
        self.leaderships: list[Leadership] = []
        self.leader_changes: list[tuple[float, str, LeaderChanged]] = []
        # (holder, epoch) -> real time its lease ends, as the holder last computed it.
        self.lease_ends: dict[tuple[str, int], float] = {}
        self.views_checked = 0
        # Scripted loss on top of the random one: copies for which it returns True
        # (sender, target, message bytes) are dropped.
        self.drop: Callable[[str, str, bytes], bool] | None = None
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        drift = config.election.max_drift
        names = [f"m{i}" for i in range(config.members)]
        ranks: list[int | None] = [*self.rng.sample(range(100), config.members)]
        for i in range(min(config.unranked, config.members - 1)):
            ranks[i] = None
        self.members: dict[str, _Member] = {}
        for name, rank in zip(names, ranks, strict=True):
            member = _Member(name, rank, self._rate(drift), self.rng.uniform(0, 1e4), None)
            self.members[name] = member
            self._start(member, epoch=0)
        pairs = [(a, b) for a in names for b in names if a < b]
        # Per pair: connected since, both up together since, and when the pair
        # became stable (up together for detection_delay since connecting).
        self._since = dict.fromkeys(pairs, 0.0)
        self._together = dict.fromkeys(pairs, 0.0)
        self._stable = dict.fromkeys(pairs, config.detection_delay)
        for name in names:
            self._refresh(name)

    # ----------------------------------------------------------- clocks etc.

    def _rate(self, drift: float) -> float:
        # Extremes are where overlaps hide, so they are drawn often.
        return self.rng.choice((1.0 - drift, 1.0 + drift, 1.0 + self.rng.uniform(-drift, drift)))

    def local(self, name: str) -> float:
        member = self.members[name]
        return member.offset + member.rate * self.now

    def election(self, name: str) -> Election:
        election = self.members[name].election
        assert election is not None, f"{name} is not running"
        return election

    def up(self, name: str) -> bool:
        member = self.members[name]
        return member.election is not None and member.paused_until is None

    def reachable(self, a: str, b: str) -> bool:
        """Both up and on one side: what the membership layer reports as alive."""
        return self.up(a) and self.up(b) and self.members[a].group == self.members[b].group

    def connected(self, a: str, b: str) -> bool:
        """Both running and on one side; a paused process still counts, since it
        wakes up in the same component and may act on what it believed."""
        first, second = self.members[a], self.members[b]
        return (
            first.election is not None
            and second.election is not None
            and first.group == second.group
        )

    def _start(self, member: _Member, epoch: int) -> None:
        member.incarnation += 1
        member.election = self.factory(
            self.config.election,
            member.name,
            rank=member.rank,
            now=member.offset + member.rate * self.now,
            epoch=epoch,
            life=member.incarnation,
            joining=True,
        )
        member.last_epoch = epoch
        member.leading_since = None
        member.joined = False
        member.view_epoch = 0
        self._schedule_tick(member)

    # -------------------------------------------------------------- schedule

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def run_until(self, until: float) -> None:
        while self._events and self._events[0][0] <= until:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()
            self._check()
        self.now = max(self.now, until)

    def _schedule_tick(self, member: _Member) -> None:
        if member.election is None:
            return
        member.tick_version += 1
        version = member.tick_version
        deadline = member.election.next_deadline()
        if deadline == float("inf"):
            return
        when = max(self.now, (deadline - member.offset) / member.rate)
        # Float rounding must not wake the member a hair before its deadline,
        # or it would find nothing due and ask for the same instant forever.
        while member.offset + member.rate * when < deadline:
            when = math.nextafter(when, math.inf)

        def fire() -> None:
            if member.tick_version != version or member.election is None:
                return
            if member.paused_until is not None:
                self.at(member.paused_until, fire)
                return
            self._apply(member, member.election.tick(self.local(member.name)))

        self.at(when, fire)

    def _apply(self, member: _Member, effects: Sequence[object]) -> None:
        for effect in effects:
            if isinstance(effect, Send | Broadcast):
                self._send(member, effect)
            elif isinstance(effect, LeaderChanged):
                self.leader_changes.append((self.now, member.name, effect))
        self._schedule_tick(member)

    def _send(self, sender: _Member, message: Send | Broadcast) -> None:
        cfg = self.config
        group = sender.group
        targets = [message.to] if isinstance(message, Send) else list(self.members)
        # A Broadcast travels as agent gossip: the gossip queue retransmits it and
        # every member re-broadcasts what it had not seen (membership/layer.py), so
        # a member misses it only when every copy is lost; BROADCAST_COPIES copies
        # stand for that, far fewer than a real cluster sends.
        tries = BROADCAST_COPIES if isinstance(message, Broadcast) else 1
        for target in targets:
            if target == sender.name or target not in self.members:
                continue
            if all(self.rng.random() < cfg.loss for _ in range(tries)):
                continue
            if self.drop is not None and self.drop(sender.name, target, message.data):
                continue
            copies = 2 if self.rng.random() < cfg.duplicate else 1
            for _ in range(copies):
                delay = self.rng.uniform(cfg.min_delay, cfg.max_delay)
                self.at(self.now + delay, self._deliverer(target, group, message.data))

    def _deliverer(self, target: str, group: int, data: bytes) -> Callable[[], None]:
        incarnation = -1

        def read() -> None:
            member = self.members[target]
            if member.election is None or member.incarnation != incarnation:
                return  # the process that had it in its socket buffer is gone
            if member.paused_until is not None:
                self.at(member.paused_until, read)
                return
            self._apply(member, member.election.receive(data, self.local(target)))

        def deliver() -> None:
            nonlocal incarnation
            member = self.members[target]
            # The partition decides whether it arrives, not whether it is read:
            # a paused process reads on resume what its socket buffer kept,
            # even if the network has been cut or healed since.
            if member.election is None or member.group != group:
                return
            incarnation = member.incarnation
            read()

        return deliver

    # -------------------------------------------------------------- membership

    def _refresh(self, name: str) -> None:
        member = self.members[name]
        if member.election is None:
            return
        if member.paused_until is not None:
            self.at(member.paused_until, lambda: self._refresh(name))
            return
        views = {
            other.name: MemberView(other.rank, self.reachable(name, other.name))
            for other in self.members.values()
            if other.name != name
        }
        self._apply(member, member.election.update_members(views, self.local(name)))
        if not member.joined and member.election is not None:
            # The first view is what a join brings: the member has joined.
            member.joined = True
            self._apply(member, member.election.joined(self.local(name)))

    def _changed(self) -> None:
        """Connectivity changed now: update the pair clocks, refresh views later."""
        inf = math.inf
        delay = self.config.detection_delay
        for pair in self._since:
            a, b = pair
            if not self.connected(a, b):
                self._since[pair] = self._together[pair] = self._stable[pair] = inf
                continue
            if self._since[pair] == inf:
                self._since[pair] = self.now
            if not self.reachable(a, b):
                self._together[pair] = inf
            elif self._together[pair] == inf:
                self._together[pair] = self.now
                self.at(self.now + delay, lambda pair=pair, t=self.now: self._settle(pair, t))  # type: ignore[misc]
        for name in self.members:
            self.at(self.now + delay, lambda name=name: self._refresh(name))  # type: ignore[misc]

    def _settle(self, pair: tuple[str, str], together: float) -> None:
        # Up together for a whole detection delay: both views now show the other.
        if self._together[pair] == together and self._stable[pair] == math.inf:
            self._stable[pair] = self.now

    def stable_since(self, a: str, b: str) -> float:
        """When ``a`` and ``b`` last became a stable pair (``inf`` if not connected)."""
        return self._stable[(min(a, b), max(a, b))]

    # ----------------------------------------------------------------- faults

    def kill(self, name: str) -> None:
        member = self.members[name]
        if member.election is None:
            return
        member.election = None
        member.paused_until = None
        member.leading_since = None
        self._changed()

    def restart(self, name: str) -> None:
        """Start a killed member afresh; its epoch survives (the agent snapshots it)."""
        member = self.members[name]
        if member.election is not None:
            return
        member.rate = self._rate(self.config.election.max_drift)
        member.offset = self.rng.uniform(0, 1e4)
        self._start(member, epoch=member.last_epoch)
        self._changed()
        self._refresh(name)

    def pause(self, name: str, duration: float) -> None:
        member = self.members[name]
        if member.election is None or member.paused_until is not None:
            return
        member.paused_until = self.now + duration
        self._changed()

        def resume() -> None:
            if member.paused_until is not None and member.paused_until <= self.now:
                member.paused_until = None
                self._changed()

        self.at(self.now + duration, resume)

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        for index, group in enumerate(groups):
            for name in group:
                self.members[name].group = index
        self._changed()

    def heal(self) -> None:
        self.partition([list(self.members)])

    def set_rank(self, name: str, rank: int | None) -> None:
        """Change a rank tag: the member knows at once, the others after a gossip delay."""
        member = self.members[name]
        member.rank = rank
        if member.election is not None and member.paused_until is None:
            self._apply(member, member.election.set_rank(rank, self.local(name)))
        delay = self.rng.uniform(self.config.max_delay, self.config.detection_delay)
        for other in self.members:
            if other != name:
                self.at(self.now + delay, lambda other=other: self._refresh(other))  # type: ignore[misc]

    # ---------------------------------------------------------------- checker

    def current_leaders(self) -> list[str]:
        return [
            m.name
            for m in self.members.values()
            if m.election is not None and m.election.is_leader(self.local(m.name))
        ]

    def _check(self) -> None:
        quorum = self.config.election.quorum > 0
        leaders = []
        views: list[tuple[_Member, LeaderView]] = []
        for member in self.members.values():
            election = member.election
            if election is None:
                continue
            epoch = election.epoch
            if epoch < member.last_epoch:
                self._violate(f"{member.name} epoch went down {member.last_epoch} -> {epoch}")
            member.last_epoch = epoch
            # leader() names the member itself exactly while is_leader() holds.
            view = election.leader(member.offset + member.rate * self.now)
            if view is not None and view.is_self:
                leaders.append(member)
                if member.leading_since is None:
                    member.leading_since = self.now
                    self._began(member)
                end = self.now + view.lease_remaining / member.rate
                self.lease_ends[(member.name, view.epoch)] = end
            else:
                member.leading_since = None
            if view is not None and member.paused_until is None:
                views.append((member, view))
        for member, view in views:
            self._check_view(member, view)
        for i, a in enumerate(leaders):
            for b in leaders[i + 1 :]:
                if quorum:
                    self._violate(f"two leaders in quorum mode: {a.name} and {b.name}")
                    continue
                if not self.connected(a.name, b.name):
                    continue
                assert a.leading_since is not None
                assert b.leading_since is not None
                if self.stable_since(a.name, b.name) < max(a.leading_since, b.leading_since):
                    self._violate(f"two connected leaders: {a.name} and {b.name}")

    def _check_view(self, member: _Member, view: LeaderView) -> None:
        """What a running member answers ``GetLeader`` with right now, if anything."""
        self.views_checked += 1
        if view.epoch < member.view_epoch:
            self._violate(f"{member.name} reports epoch {view.epoch} after {member.view_epoch}")
        member.view_epoch = max(member.view_epoch, view.epoch)
        if view.is_self:
            return
        end = self.lease_ends.get((view.name, view.epoch))
        if end is None:
            self._violate(f"{member.name} reports {view.name} epoch {view.epoch}, never begun")
            return
        late = self.now - end
        if late > self.config.election.max_clock_skew:
            self._violate(
                f"{member.name} reports {view.name} epoch {view.epoch}"
                f" whose lease ended {late:.3f}s ago"
            )

    def _began(self, member: _Member) -> None:
        assert member.election is not None
        view = member.election.leader(self.local(member.name))
        assert view is not None
        epoch = view.epoch
        if epoch <= member.own_epoch:
            self._violate(f"{member.name} led again with epoch {epoch} <= {member.own_epoch}")
        member.own_epoch = epoch
        quorum = self.config.election.quorum > 0
        for earlier in self.leaderships:
            if earlier.name == member.name:
                continue
            if not quorum and not self.stable_since(earlier.name, member.name) < earlier.began:
                continue
            if epoch <= earlier.epoch:
                self._violate(
                    f"{member.name} began epoch {epoch} after {earlier.name} had {earlier.epoch}"
                )
        self.leaderships.append(Leadership(member.name, epoch, self.now, member.incarnation))

    def _violate(self, what: str) -> None:
        self.violations.append(f"t={self.now:.3f}: {what}")

    # ----------------------------------------------------------- fault plans

    def random_faults(self, start: float, end: float, count: int) -> None:
        """Schedule ``count`` random faults in ``[start, end)``; each heals on its own."""
        names = list(self.members)
        lease = self.config.election.lease_time
        for _ in range(count):
            when = self.rng.uniform(start, end)
            kind = self.rng.choice(("kill", "pause", "partition", "rank", "leader"))
            victim = self.rng.choice(names)
            if kind == "kill":
                self.at(when, lambda v=victim: self.kill(v))  # type: ignore[misc]
                back = when + self.rng.uniform(1.0, 2 * lease)
                self.at(back, lambda v=victim: self.restart(v))  # type: ignore[misc]
            elif kind == "pause":
                length = self.rng.uniform(lease * 1.05, lease * 2.0)
                self.at(when, lambda v=victim, d=length: self.pause(v, d))  # type: ignore[misc]
            elif kind == "partition":
                shuffled = self.rng.sample(names, len(names))
                cut = self.rng.randint(1, len(names) - 1)
                groups = [shuffled[:cut], shuffled[cut:]]
                self.at(when, lambda g=groups: self.partition(g))  # type: ignore[misc]
                self.at(when + self.rng.uniform(1.0, 3 * lease), self.heal)
            elif kind == "rank":
                rank = self.rng.randrange(100)
                self.at(when, lambda v=victim, r=rank: self._rerank(v, r))  # type: ignore[misc]
            else:
                # Pause whoever leads at that moment, the case fencing is for.
                length = self.rng.uniform(lease * 1.05, lease * 2.0)
                self.at(when, lambda d=length: self._pause_leader(d))  # type: ignore[misc]

    def _rerank(self, name: str, rank: int) -> None:
        if self.members[name].rank is None:
            return  # quorum runs keep the voter set fixed; unranked stay unranked
        self.set_rank(name, rank)

    def _pause_leader(self, duration: float) -> None:
        leaders = self.current_leaders()
        if leaders:
            self.pause(leaders[0], duration)


def run_seed(
    seed: int,
    config: SimConfig,
    *,
    duration: float = 90.0,
    faults: int = 6,
    factory: ElectionFactory = Election,
) -> ElectionSim:
    """One random run: a quiet start, ``faults`` random faults, then a quiet tail."""
    sim = ElectionSim(config, seed, factory=factory)
    sim.random_faults(15.0, duration - 20.0, faults)
    sim.run_until(duration)
    return sim
