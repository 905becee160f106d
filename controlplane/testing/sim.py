"""Discrete-event simulation of gossip clusters: a virtual clock, a lossy network, N cores.

Everything runs in one thread from one heap of timed events (datagram
deliveries, push-pull legs, timer wake-ups, scheduled callbacks). Given the
same seed a run is identical, so tests can assert exact outcomes and a
1,000-member cluster runs in seconds.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, cast

from controlplane.gossip.config import GossipConfig
from controlplane.gossip.effects import (
    Effect,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    SendPacket,
    StartPushPull,
    StartStreamPing,
    UserMessage,
)
from controlplane.gossip.errors import PushPullRejected, StreamPingRefused
from controlplane.gossip.keyring import Keyring
from controlplane.gossip.node import GossipNode
from controlplane.gossip.state import Address, Member, NodeStatus


class VirtualClock:
    """Monotonic seconds that only move when told to."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a monotonic clock cannot go back")
        self._now = when


class SimNetwork:
    """Seeded datagram fate: loss, delay with jitter, duplication, reordering, partitions.

    ``delay`` is the one-way latency range in seconds; ``reorder`` is the chance a
    datagram takes an extra ``reorder_delay`` (so later ones overtake it);
    ``set_link_delay`` adds a fixed one-way delay between two sets of addresses (a
    topology of sites whose members are near each other and far from the others).
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.005),
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float = 0.05,
    ) -> None:
        self._rng = rng
        self.loss = loss
        self.delay = delay
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_delay = reorder_delay
        self._group: dict[Address, int] = {}
        # Addresses whose datagrams are all lost, both ways, while streams to them work
        # (a firewall that filters UDP only).
        self.udp_blocked: set[Address] = set()
        self._link_delay: dict[tuple[Address, Address], float] = {}
        self.sent = 0
        self.lost = 0

    def partition(self, groups: Sequence[Iterable[Address]]) -> None:
        """Split the network: addresses in different groups cannot reach each other.

        Addresses in no group form one more group together.
        """
        self._group = {}
        for index, group in enumerate(groups, start=1):
            for address in group:
                self._group[address] = index

    def heal(self) -> None:
        self._group = {}

    def set_link_delay(
        self, side_a: Iterable[Address], side_b: Iterable[Address], one_way: float
    ) -> None:
        """Datagrams between any address of ``side_a`` and any of ``side_b`` (both ways)
        take ``one_way`` seconds more; 0 removes the extra delay."""
        if not 0.0 <= one_way <= 60.0:
            raise ValueError(f"one_way must be 0 to 60 s, got {one_way}")
        side_b = list(side_b)
        for a in side_a:
            for b in side_b:
                for link in ((a, b), (b, a)):
                    if one_way:
                        self._link_delay[link] = one_way
                    else:
                        self._link_delay.pop(link, None)

    def link_delay(self, src: Address, dst: Address) -> float:
        return self._link_delay.get((src, dst), 0.0)

    def connected(self, src: Address, dst: Address) -> bool:
        return self._group.get(src, 0) == self._group.get(dst, 0)

    def latency(self) -> float:
        low, high = self.delay
        return low + (high - low) * self._rng.random()

    def fate(self, src: Address, dst: Address) -> list[float]:
        """Delays after which copies of one datagram arrive (empty: lost)."""
        self.sent += 1
        if (
            not self.connected(src, dst)
            or src in self.udp_blocked
            or dst in self.udp_blocked
            or (self.loss and self._rng.random() < self.loss)
        ):
            self.lost += 1
            return []
        delay = self.latency() + self.link_delay(src, dst)
        if self.reorder and self._rng.random() < self.reorder:
            delay += self.reorder_delay * self._rng.random()
        if self.duplicate and self._rng.random() < self.duplicate:
            return [delay, delay + self.latency()]
        return [delay]


class Driver(Protocol):
    """What the simulator drives: a bare ``GossipNode`` or a layer that owns one.

    Effects other than ``SendPacket``/``StartPushPull``/``StartStreamPing`` are recorded,
    not executed.
    """

    def next_deadline(self) -> float: ...

    def tick(self, now: float) -> Sequence[object]: ...

    def receive_packet(self, src: Address, data: bytes, now: float) -> Sequence[object]: ...

    def handle_push_pull(
        self, src: Address, request: bytes, now: float
    ) -> tuple[bytes, Sequence[object]]: ...

    def push_pull_response(
        self, src: Address, response: bytes | None, now: float
    ) -> Sequence[object]: ...

    def stream_ping_response(
        self, seq_no: int, response: bytes | None, now: float
    ) -> Sequence[object]: ...

    def answer_stream_ping(self, request: bytes) -> bytes: ...

    def join(self, seeds: Sequence[Address], now: float) -> Sequence[object]: ...

    def leave(self, now: float) -> Sequence[object]: ...


@dataclass(slots=True)
class SimMember:
    """One simulated agent: its core (and the layer driving it, if any) and its process state."""

    name: str
    address: Address
    core: GossipNode
    running: bool = True
    paused: bool = False
    # While ``now < stalled_until`` the process is starved: work waits until then.
    stalled_until: float = 0.0
    scheduled: float = math.inf
    events: list[tuple[float, Effect]] = field(default_factory=list)
    # A layer above the core (e.g. ``Membership``) that owns ``core``; driven instead of it.
    layer: Driver | None = None

    @property
    def driver(self) -> Driver:
        return self.core if self.layer is None else self.layer


# Event kinds, ordered only by time and insertion.
_WAKE = 0
_DELIVER = 1
_PP_REQUEST = 2
_PP_RESPONSE = 3
_CALL = 4
_SP_REQUEST = 5
_SP_RESPONSE = 6
# How long after a stall ends its backlog of datagrams starts being handled.
_BACKLOG_DELAY = 0.001


class SimCluster:
    """N gossip cores on a :class:`SimNetwork`, driven by a heap of timed events."""

    def __init__(
        self,
        config: GossipConfig | None = None,
        *,
        seed: int = 0,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.005),
        duplicate: float = 0.0,
        reorder: float = 0.0,
        keys: Sequence[bytes] | None = None,
        label: str = "",
        record_events: bool = True,
        strict: bool = True,
    ) -> None:
        # Strict by default: a bug inside a core fails the simulation instead of being
        # counted as a dropped message (GossipConfig.strict).
        self.config = replace(config or GossipConfig.lan(), strict=strict)
        self.clock = VirtualClock()
        self._rng = random.Random(seed)
        self.network = SimNetwork(
            random.Random(self._rng.getrandbits(64)),
            loss=loss,
            delay=delay,
            duplicate=duplicate,
            reorder=reorder,
        )
        self._keys = list(keys) if keys else None
        self._label = label
        self._record_events = record_events
        self.members: dict[str, SimMember] = {}
        self._by_address: dict[Address, SimMember] = {}
        # Push-pull record encodings, shared by every core (GossipNode record_cache).
        self.record_cache: dict[tuple[object, ...], bytes] = {}
        self._heap: list[tuple[float, int, int, object]] = []
        self._counter = itertools.count()
        self.events_processed = 0
        # Observers called with (time, observer name, effect) for every member event.
        self.listeners: list[Callable[[float, str, Effect], None]] = []

    # ------------------------------------------------------------------ membership

    @property
    def now(self) -> float:
        return self.clock.now

    def address_of(self, name: str) -> Address:
        return self.members[name].address

    def _new_address(self) -> Address:
        index = len(self._by_address) + 1
        return (f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}", 7946)

    def _make_core(self, name: str, address: Address, meta: bytes) -> GossipNode:
        keyring = None
        if self._keys:
            nonce_rng = random.Random(self._rng.getrandbits(64))
            keyring = Keyring(self._keys, nonce_source=nonce_rng.randbytes)
        return GossipNode(
            self.config,
            name,
            address,
            meta=meta,
            rng=random.Random(self._rng.getrandbits(64)),
            now=self.now,
            keyring=keyring,
            label=self._label,
            record_cache=self.record_cache,
        )

    def _make_member(self, name: str, address: Address, meta: bytes) -> SimMember:
        """Build one member; subclasses put a layer on top of the core here."""
        return SimMember(name, address, self._make_core(name, address, meta))

    def add_node(self, name: str, *, meta: bytes = b"", seeds: Sequence[str] = ()) -> SimMember:
        """Start a member (optionally joining through ``seeds``, given by name)."""
        if name in self.members and self.members[name].running:
            raise ValueError(f"{name} is already running")
        address = self.members[name].address if name in self.members else self._new_address()
        member = self._make_member(name, address, meta)
        self.members[name] = member
        self._by_address[address] = member
        self._reschedule(member)
        if seeds:
            self.join(name, seeds)
        return member

    def add_nodes(self, count: int, *, prefix: str = "node", seed_name: str | None = None) -> None:
        """Start ``count`` members that all join through ``seed_name`` (default: the first)."""
        names = [f"{prefix}-{index:04d}" for index in range(count)]
        first = seed_name or names[0]
        for name in names:
            self.add_node(name, seeds=() if name == first else (first,))

    def bootstrap(self, count: int, *, prefix: str = "node") -> None:
        """Start ``count`` members that already know each other (a converged cluster)."""
        names = [f"{prefix}-{index:04d}" for index in range(count)]
        for name in names:
            self.add_node(name)
        snapshot = [
            Member(name, self.members[name].address, b"", 1, NodeStatus.ALIVE) for name in names
        ]
        for name in names:
            member = self.members[name]
            member.core.restore(snapshot, self.now)
            self._reschedule(member)

    def join(self, name: str, seeds: Sequence[str]) -> None:
        member = self.members[name]
        addresses = [self.members[seed].address for seed in seeds]
        self._apply(member, member.driver.join(addresses, self.now))

    def leave(self, name: str) -> None:
        member = self.members[name]
        self._apply(member, member.driver.leave(self.now))

    def update_meta(self, name: str, meta: bytes) -> None:
        member = self.members[name]
        self._apply(member, member.core.update_meta(meta, self.now))

    def broadcast_user(self, name: str, payload: bytes) -> None:
        member = self.members[name]
        member.core.broadcast_user(payload, self.now)
        self._reschedule(member)

    def kill(self, name: str) -> None:
        """Stop a member abruptly: no more timers, incoming traffic is lost."""
        self.members[name].running = False

    def pause(self, name: str) -> None:
        """Freeze a member (SIGSTOP): timers stop and incoming datagrams are lost."""
        self.members[name].paused = True

    def resume(self, name: str) -> None:
        member = self.members[name]
        member.paused = False
        member.scheduled = math.inf
        self._reschedule(member)

    def stall(self, name: str, seconds: float) -> None:
        """Starve a member of CPU: everything it would do waits ``seconds``, nothing is lost."""
        member = self.members[name]
        member.stalled_until = max(member.stalled_until, self.now + seconds)

    def partition(self, *groups: Sequence[str]) -> None:
        self.network.partition([[self.members[name].address for name in group] for group in groups])

    def heal(self) -> None:
        self.network.heal()

    def block_udp(self, name: str) -> None:
        """Lose every datagram to and from ``name``; its streams (push-pull, stream
        pings) still work, as behind a firewall that filters only UDP."""
        self.network.udp_blocked.add(self.members[name].address)

    def unblock_udp(self, name: str) -> None:
        self.network.udp_blocked.discard(self.members[name].address)

    def set_link_delay(self, side_a: Sequence[str], side_b: Sequence[str], one_way: float) -> None:
        """Extra one-way delay between two groups of members (given by name)."""
        self.network.set_link_delay(
            [self.address_of(n) for n in side_a], [self.address_of(n) for n in side_b], one_way
        )

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``when``."""
        self._push(when, _CALL, action)

    # ------------------------------------------------------------------ observation

    def running(self) -> list[SimMember]:
        return [member for member in self.members.values() if member.running]

    def view(self, observer: str, subject: str) -> NodeStatus | None:
        state = self.members[observer].core.member(subject)
        return None if state is None else state.status

    def converged(self, names: Iterable[str] | None = None) -> bool:
        """Every running (or named) member sees exactly those members alive."""
        group = set(names) if names is not None else {m.name for m in self.running()}
        for name in group:
            core = self.members[name].core
            alive = {m.name for m in core.members() if m.status is NodeStatus.ALIVE}
            if alive != group:
                return False
        return True

    def all_see(self, subject: str, statuses: set[NodeStatus], observers: Iterable[str]) -> bool:
        return all(self.view(name, subject) in statuses for name in observers)

    # ------------------------------------------------------------------ running

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, when: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= when:
            at, _seq, kind, payload = heapq.heappop(heap)
            self.clock.set(at)
            self.events_processed += 1
            self._handle(at, kind, payload)
        self.clock.set(max(self.now, when))

    def run_until_true(
        self, condition: Callable[[], bool], timeout: float, step: float = 0.1
    ) -> float | None:
        """Run until ``condition()`` holds (checked every ``step``); the time it took, or None."""
        start = self.now
        while self.now - start < timeout:
            if condition():
                return self.now - start
            self.run_for(step)
        return self.now - start if condition() else None

    def _push(self, at: float, kind: int, payload: object) -> None:
        heapq.heappush(self._heap, (at, next(self._counter), kind, payload))

    def _reschedule(self, member: SimMember) -> None:
        if not member.running or member.paused:
            return
        deadline = max(member.driver.next_deadline(), self.now)
        if deadline < member.scheduled:
            member.scheduled = deadline
            self._push(deadline, _WAKE, member)

    def _handle(self, at: float, kind: int, payload: object) -> None:
        if kind == _WAKE:
            member = payload
            assert isinstance(member, SimMember)
            if member.scheduled != at or not member.running or member.paused:
                return
            if member.stalled_until > at:
                member.scheduled = member.stalled_until
                self._push(member.stalled_until, _WAKE, member)
                return
            member.scheduled = math.inf
            self._apply(member, member.driver.tick(at))
        elif kind == _DELIVER:
            dst, src, data = cast(tuple[Address, Address, bytes], payload)
            member = self._by_address.get(dst)
            if member is None or not member.running or member.paused:
                return
            if member.stalled_until > at:
                # A starved process runs its overdue timers before draining its socket.
                self._push(member.stalled_until + _BACKLOG_DELAY, _DELIVER, payload)
                return
            self._apply(member, member.driver.receive_packet(src, data, at))
        elif kind == _PP_REQUEST:
            self._serve_push_pull(at, payload)
        elif kind == _PP_RESPONSE:
            member, src, response = cast(tuple[SimMember, Address, bytes | None], payload)
            if not member.running or member.paused:
                return
            if member.stalled_until > at:
                self._push(member.stalled_until, _PP_RESPONSE, payload)
                return
            self._apply(member, member.driver.push_pull_response(src, response, at))
        elif kind == _SP_REQUEST:
            self._serve_stream_ping(at, payload)
        elif kind == _SP_RESPONSE:
            member, seq_no, response = cast(tuple[SimMember, int, bytes | None], payload)
            if not member.running or member.paused:
                return
            if member.stalled_until > at:
                self._push(member.stalled_until, _SP_RESPONSE, payload)
                return
            self._apply(member, member.driver.stream_ping_response(seq_no, response, at))
        elif kind == _CALL:
            action = payload
            assert callable(action)
            action()

    def _serve_push_pull(self, at: float, payload: object) -> None:
        client, dst, request, started = cast(tuple[SimMember, Address, bytes, float], payload)
        server = self._by_address.get(dst)
        timeout_at = started + self.config.push_pull_timeout
        if (
            server is None
            or not server.running
            or server.paused
            or not self.network.connected(client.address, dst)
        ):
            self._push(max(timeout_at, at), _PP_RESPONSE, (client, dst, None))
            return
        if server.stalled_until > at:
            if server.stalled_until >= timeout_at:
                self._push(timeout_at, _PP_RESPONSE, (client, dst, None))
            else:
                self._push(server.stalled_until, _PP_REQUEST, payload)
            return
        try:
            response, effects = server.driver.handle_push_pull(client.address, request, at)
        except PushPullRejected:
            self._push(at + self.network.latency(), _PP_RESPONSE, (client, dst, None))
            return
        self._apply(server, effects)
        self._push(at + self.network.latency(), _PP_RESPONSE, (client, dst, response))

    def _serve_stream_ping(self, at: float, payload: object) -> None:
        """A stream ping's request leg. A stopped process refuses the connection (the
        caller learns at once); a paused, starved past the deadline or partitioned one
        leaves the call hanging until its timeout."""
        client, dst, request, seq_no, timeout_at = cast(
            tuple[SimMember, Address, bytes, int, float], payload
        )
        timeout_at = max(timeout_at, at)
        server = self._by_address.get(dst)
        if server is None or not server.running:
            self._push(at + self.network.latency(), _SP_RESPONSE, (client, seq_no, None))
            return
        if server.paused or not self.network.connected(client.address, dst):
            self._push(timeout_at, _SP_RESPONSE, (client, seq_no, None))
            return
        if server.stalled_until > at:
            if server.stalled_until >= timeout_at:
                self._push(timeout_at, _SP_RESPONSE, (client, seq_no, None))
            else:
                self._push(server.stalled_until, _SP_REQUEST, payload)
            return
        try:
            response: bytes | None = server.driver.answer_stream_ping(request)
        except StreamPingRefused:
            response = None
        arrival = at + self.network.latency()
        if arrival > timeout_at:
            arrival, response = timeout_at, None
        self._push(arrival, _SP_RESPONSE, (client, seq_no, response))

    def _apply(self, member: SimMember, effects: Sequence[object]) -> None:
        now = self.now
        for effect in effects:
            if isinstance(effect, SendPacket):
                src = member.address
                for delay in self.network.fate(src, effect.dest):
                    self._push(now + delay, _DELIVER, (effect.dest, src, effect.data))
            elif isinstance(effect, StartPushPull):
                self._push(
                    now + self.network.latency(),
                    _PP_REQUEST,
                    (member, effect.dest, effect.request, now),
                )
            elif isinstance(effect, StartStreamPing):
                self._push(
                    now + self.network.latency(),
                    _SP_REQUEST,
                    (member, effect.dest, effect.request, effect.seq_no, now + effect.timeout),
                )
            elif isinstance(
                effect, MemberJoined | MemberLeft | MemberUpdated | MemberReaped | UserMessage
            ):
                if self._record_events:
                    member.events.append((now, effect))
                for listener in self.listeners:
                    listener(now, member.name, effect)
        self._reschedule(member)
