"""The sans-IO Serf layer: member statuses, intents, user events, reaping, snapshot records.

:class:`Membership` owns a :class:`GossipNode` (built inside, with its
``local_state`` as the node's user-state provider) and has the same driving
surface, so the asyncio runtime and the simulator drive either one. It consumes
the core's member, user-message and remote-state (``MergeRemoteState``) effects
and returns ``MemberEvent``, ``UserEvent`` and
``SnapshotRecord`` effects beside the core's ``SendPacket``/``StartPushPull``.

Who does what:

* failure detection, reconnecting to failed members and seeds (every
  ``reconnect_interval`` for ``reconnect_timeout``, both taken from
  :class:`MembershipConfig` and applied to the core) and address conflicts:
  the gossip core;
* statuses alive / leaving / left / failed, join and leave intents ordered by
  a Lamport clock, user events ordered by a second clock and de-duplicated,
  epidemic re-broadcast of intents and events, reaping failed members after
  ``reconnect_timeout`` and left members after ``tombstone_timeout``,
  ForceLeave, coalescing and snapshot records: this layer (serf/serf.go).
"""

from __future__ import annotations

import enum
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import overload

from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.gossip.config import GossipConfig
from controlplane.gossip.effects import Effect as CoreEffect
from controlplane.gossip.effects import (
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    MergeRemoteState,
    NameConflict,
    PingComplete,
    ReachedOnlyByStream,
    SendPacket,
    StartPushPull,
    StartStreamPing,
    UserMessage,
)
from controlplane.gossip.errors import PayloadTooLarge
from controlplane.gossip.keyring import Keyring
from controlplane.gossip.node import MERGE_CHANGE_COST, GossipNode
from controlplane.gossip.node import PushPullMerge as CoreMerge
from controlplane.gossip.state import Address, Member
from controlplane.membership import messages
from controlplane.membership.buffers import (
    BufferedEvent,
    EventAdmission,
    EventBuffer,
    IntentBuffer,
    IntentType,
)
from controlplane.membership.coalesce import MemberCoalescer, UserCoalescer
from controlplane.membership.config import MembershipConfig
from controlplane.membership.coordinate import Coordinate, CoordinateConfig, NetworkCoordinates
from controlplane.membership.events import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    MemberInfo,
    MemberStatus,
    UserEvent,
)
from controlplane.membership.lamport import (
    MAX_LAMPORT_CATCH_UP,
    MAX_LAMPORT_STEP,
    LamportClock,
    within_reach,
)
from controlplane.membership.snapshot import SnapshotRecord, SnapshotState, SnapshotWriter
from controlplane.membership.stats import MembershipStats
from controlplane.membership.tags import check_tags, decode_tags
from controlplane.membership.validation import (
    MAX_EVENT_NAME_SIZE,
    check_node_name,
    check_user_event,
    valid_node_name,
)
from controlplane.wire.v1 import membership_pb2

Effect = (
    SendPacket
    | StartPushPull
    | StartStreamPing
    | ReachedOnlyByStream
    | MemberEvent
    | UserEvent
    | SnapshotRecord
    | ChannelDelivery
    | ChannelStateReceived
    | NameConflict
)

CHANNEL_NAME = re.compile(r"[a-z0-9_-]{1,32}")
# Channel messages already delivered, remembered to drop the copies that gossip
# brings back; a few thousand covers several broadcast lifetimes at agent rates.
CHANNEL_DEDUPE_SIZE = 8192
StateProvider = Callable[[], bytes]
"""Everything :class:`Membership` entry points return."""

_NO_TAGS: Mapping[str, str] = MappingProxyType({})
_DONE = object()


class _LocalState(enum.Enum):
    """The agent's own lifecycle (serf.go SerfState)."""

    ALIVE = "alive"
    LEAVING = "leaving"
    LEFT = "left"


class _Census:
    """How many members have each status, and which have left, kept as statuses
    change."""

    __slots__ = ("alive", "by_status", "left", "version")

    def __init__(self) -> None:
        self.alive = 0
        self.by_status: dict[MemberStatus, int] = dict.fromkeys(MemberStatus, 0)
        # Insertion-ordered set: the push-pull state lists these without a scan.
        self.left: dict[str, None] = {}
        # Moves with every status change, those without an event included.
        self.version = 0

    def count(self, state: _Member, sign: int) -> None:
        """Counts `state` in (sign 1) or out (sign -1) with its current status."""
        self.version += 1
        self.by_status[state.status] += sign
        if state.status is MemberStatus.ALIVE:
            self.alive += sign
        elif state.status is MemberStatus.LEFT:
            if sign > 0:
                self.left[state.name] = None
            else:
                self.left.pop(state.name, None)


# Fields a MemberInfo is made of: setting one drops the member's cached info.
_INFO_FIELDS = frozenset({"address", "tags", "status", "incarnation"})


@dataclass(slots=True, eq=False)
class _Member:
    """What this agent believes about one member (serf.go memberState).

    The member's :class:`MemberInfo` is built once per change and shared by
    every reader (member lists, events, views), so listing or watching a large
    cluster does not rebuild thousands of snapshots.
    """

    name: str
    address: Address
    tags: dict[str, str]
    status: MemberStatus
    incarnation: int
    # Lamport time of the last join or leave intent applied (serf statusLTime).
    status_ltime: int = 0
    # ``now`` when it failed or left (serf leaveTime); drives reaping.
    leave_time: float = 0.0
    info: MemberInfo | None = None
    census: _Census | None = None
    # The encoded push-pull field of status_ltime, replaced when that time changes.
    status_field: bytes | None = None

    def __setattr__(self, field: str, value: object) -> None:
        if field in _INFO_FIELDS:
            object.__setattr__(self, "info", None)
            if field == "status":
                census = getattr(self, "census", None)
                if census is not None:
                    census.count(self, -1)
                    object.__setattr__(self, field, value)
                    census.count(self, 1)
                    return
        elif field == "status_ltime":
            # Encoded as the time changes (one field per intent) rather than for
            # every member changed since the last exchange, inside the next one.
            name = getattr(self, "name", None)
            if isinstance(name, str) and isinstance(value, int):
                object.__setattr__(self, "status_field", messages.status_time_field(name, value))
            else:
                object.__setattr__(self, "status_field", None)
        object.__setattr__(self, field, value)


def _state_name(state: _Member) -> str:
    return state.name


class _MemberView(Sequence[MemberInfo]):
    """Members in name order whose infos are built as they are read."""

    __slots__ = ("_info", "_states")

    def __init__(self, states: list[_Member], info: Callable[[_Member], MemberInfo]) -> None:
        self._states = states
        self._info = info

    def __len__(self) -> int:
        return len(self._states)

    @overload
    def __getitem__(self, index: int) -> MemberInfo: ...

    @overload
    def __getitem__(self, index: slice) -> list[MemberInfo]: ...

    def __getitem__(self, index: int | slice) -> MemberInfo | list[MemberInfo]:
        if isinstance(index, slice):
            return [self._info(state) for state in self._states[index]]
        return self._info(self._states[index])

    def __iter__(self) -> Iterator[MemberInfo]:
        info = self._info
        for state in self._states:
            yield info(state)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (_MemberView, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable view, as a list

    def __repr__(self) -> str:
        return f"<members {list(self)!r}>"


@dataclass(slots=True, eq=False)
class _SerfMerge:
    """A peer's Serf-layer state being merged: its items are applied a few at a time."""

    state: membership_pb2.MembershipState
    # serf eventJoinIgnore: this state answers our own join, which asked for no replay.
    ignore_old: bool
    now: float = 0.0
    out: list[Effect] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class PushPullMerge:
    """A peer's push-pull state merged a slice at a time (see :meth:`Membership.merge_some`):
    the core's member records first, then this layer's state, as memberlist orders them."""

    core: CoreMerge
    # This state answers our join (a push-pull the join started).
    joining: bool
    serf: _SerfMerge | None = None
    steps: Iterator[None] | None = None

    @property
    def done(self) -> bool:
        return self.core.done and self.steps is None


# Consul's name for the agent itself in ``?near=``.
NEAR_AGENT = "_agent"


class Membership:
    """One agent's Serf layer. All methods are non-blocking and pure; see the module docstring."""

    def __init__(
        self,
        gossip_config: GossipConfig,
        config: MembershipConfig,
        name: str,
        address: Address,
        *,
        tags: Mapping[str, str] = _NO_TAGS,
        rng: random.Random,
        now: float,
        keyring: Keyring | None = None,
        label: str = "",
        snapshot: SnapshotState | None = None,
        coordinate_rng: random.Random | None = None,
    ) -> None:
        check_node_name(name)
        meta = check_tags(tags, gossip_config.max_meta_size)
        self.config = config
        self.name = name
        self.stats = MembershipStats()
        # The layer's timeouts drive the core's reconnect; the core keeps dead and left
        # members at least as long as the layer does, so its reaping never comes first.
        core_config = replace(
            gossip_config,
            reconnect_interval=config.reconnect_interval,
            reconnect_timeout=config.reconnect_timeout,
            dead_node_reap_time=max(
                gossip_config.dead_node_reap_time,
                config.reconnect_timeout,
                config.tombstone_timeout,
            ),
        )
        self._clock = LamportClock()
        self._event_clock = LamportClock()
        # serf.go Create: clocks start at 1 so the default join time 0 is always older.
        self._clock.increment()
        self._event_clock.increment()
        self._events = EventBuffer(config.event_buffer_size)
        self._intents = IntentBuffer(core_config.max_nodes)
        if snapshot is not None:
            # serf.go Create: restore the clocks and ignore every event up to the last one
            # recorded, so a restart does not replay old user events.
            self._clock.witness(snapshot.lamport_time)
            self._event_clock.witness(snapshot.event_time)
            self._events.raise_min_time(snapshot.event_time + 1)
        self._snapshot = snapshot
        self._writer = SnapshotWriter(snapshot, config.snapshot_min_compact_size)
        self._member_coalescer = (
            MemberCoalescer(config.coalesce_period, config.quiescent_period)
            if config.member_coalescing
            else None
        )
        self._user_coalescer = (
            UserCoalescer(config.user_coalesce_period, config.user_quiescent_period)
            if config.user_coalescing
            else None
        )
        self._state = _LocalState.ALIVE
        self._members: dict[str, _Member] = {}
        self._census = _Census()
        # Member names in order, rebuilt only when a member is added or erased.
        self._sorted_states: list[_Member] | None = None
        self._next_reap = now + config.reap_interval
        # Members pruned while still leaving: erased once their leave had time to spread.
        self._pending_prunes: dict[str, float] = {}
        # Push-pull state of peers, handled after the core's member effects of the same
        # exchange (memberlist merges nodes before calling MergeRemoteState).
        self._deferred_states: list[_SerfMerge] = []
        self._join_destinations: set[Address] = set()
        self._join_ignore_old = False
        self._leave_started = 0.0
        self._leave_drained: float | None = None
        self._rng = rng
        self._channel_providers: dict[str, StateProvider] = {}
        self._channel_seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        # serf.go Create: a Vivaldi client unless DisableCoordinates. Its own random
        # stream (by default seeded from the name), so that turning coordinates on or off
        # leaves the gossip's random choices as they were.
        self.coordinates: NetworkCoordinates | None = None
        if not config.disable_coordinates:
            self.coordinates = NetworkCoordinates(
                name,
                CoordinateConfig(max_peers=core_config.max_nodes),
                coordinate_rng if coordinate_rng is not None else random.Random(name),
            )
        self._node = GossipNode(
            core_config,
            name,
            address,
            meta=meta,
            rng=rng,
            now=now,
            keyring=keyring,
            label=label,
            user_state=self.local_state,
            ack_coordinate=(None if self.coordinates is None else self.coordinates.ack_coordinate),
        )
        self._add_member(
            _Member(name, address, dict(tags), MemberStatus.ALIVE, self._node.incarnation)
        )

    # ------------------------------------------------------------------ queries

    @property
    def node(self) -> GossipNode:
        return self._node

    @property
    def lamport_time(self) -> int:
        """The membership Lamport clock (the next time an intent would carry)."""
        return self._clock.time()

    @property
    def event_time(self) -> int:
        """The user-event Lamport clock (the time the next fired event gets)."""
        return self._event_clock.time()

    @property
    def snapshot_state(self) -> SnapshotState | None:
        return self._snapshot

    def members(self) -> Sequence[MemberInfo]:
        """Every member this agent knows, itself included, failed and left ones too,
        in name order. An unchanged member is the same object from call to call.

        The sequence is the membership of this moment, read lazily: each member's
        info is built when it is read, so a caller that walks a fleet a slice at a
        time (yielding between slices) pays for it a slice at a time."""
        states = self._sorted_states
        if states is None:
            states = self._sorted_states = sorted(self._members.values(), key=_state_name)
        return _MemberView(states, self._info)

    def member_count(self) -> int:
        """How many members are known, failed and left ones included (O(1))."""
        return len(self._members)

    def random_alive(self, count: int, exclude: str, now: float) -> list[Address]:
        """Up to ``count`` random alive members other than this one and ``exclude``,
        their addresses (GossipNode.random_alive: O(count))."""
        return self._node.random_alive(count, exclude, now)

    def alive_count(self) -> int:
        """How many members are alive, this one included (O(1))."""
        return self._census.alive

    def status_count(self, status: MemberStatus) -> int:
        """How many known members have `status` (O(1))."""
        return self._census.by_status[status]

    def local_member(self) -> MemberInfo:
        return self._info(self._members[self.name])

    def status_version(self) -> int:
        """A number that changes whenever any member's status does, including the
        moves between alive and leaving that come without an event: a view that
        re-reads such members can skip the re-read while it stays the same."""
        return self._census.version

    def member(self, name: str) -> MemberInfo | None:
        state = self._members.get(name)
        return None if state is None else self._info(state)

    def next_deadline(self) -> float:
        """Earliest ``now`` at which :meth:`tick` has work."""
        deadline = min(self._node.next_deadline(), self._next_reap)
        if self._member_coalescer is not None:
            deadline = min(deadline, self._member_coalescer.deadline())
        if self._user_coalescer is not None:
            deadline = min(deadline, self._user_coalescer.deadline())
        if self._pending_prunes:
            deadline = min(deadline, *self._pending_prunes.values())
        if self._state is _LocalState.LEAVING:
            deadline = min(deadline, self._leave_deadline())
        return deadline

    # ------------------------------------------------------------------ driving surface

    def receive_packet(self, src: Address, data: bytes, now: float) -> list[Effect]:
        """Handle one datagram (never raises for bad input)."""
        return self._drive(self._node.receive_packet(src, data, now), now)

    def probe_now(self, name: str, now: float) -> list[Effect]:
        """Probe member ``name`` out of turn (GossipNode.probe_now)."""
        return self._drive(self._node.probe_now(name, now), now)

    def tick(self, now: float) -> list[Effect]:
        """Run every timer due at ``now``: the core's, reaping, coalescing, the leave."""
        out = self._drive(self._node.tick(now), now)
        if now >= self._next_reap:
            self._reap(now, out)
            self._next_reap = now + self.config.reap_interval
        for name, at in list(self._pending_prunes.items()):
            if now >= at:
                del self._pending_prunes[name]
                state = self._members.get(name)
                if state is not None and state.status in (MemberStatus.LEAVING, MemberStatus.LEFT):
                    self._erase(state, now, out, pruned=True)
        self.leave_done(now)
        self._flush_coalescers(now, out, force=False)
        if self.config.snapshot_records:
            out.extend(self._writer.clock(self._clock.time() - 1))
        return out

    def handle_push_pull(
        self, src: Address, request: bytes, now: float
    ) -> tuple[bytes, list[Effect]]:
        """Serve a peer's push-pull; raises PushPullRejected for a refused frame."""
        job = self.open_push_pull(request)
        effects = self.merge_all(job, now)
        return self.push_pull_reply(), effects

    def push_pull_response(self, src: Address, response: bytes | None, now: float) -> list[Effect]:
        """Merge the answer to a StartPushPull (None: the exchange failed)."""
        job = self.open_push_pull_response(src, response)
        return [] if job is None else self.merge_all(job, now)

    def open_push_pull(self, request: bytes) -> PushPullMerge:
        """A peer's push-pull request, ready for :meth:`merge_some`; answer it with
        :meth:`push_pull_reply` once merged. Raises PushPullRejected for a refused frame."""
        return PushPullMerge(self._node.open_push_pull(request), joining=False)

    def open_push_pull_response(self, src: Address, response: bytes | None) -> PushPullMerge | None:
        """The answer to our StartPushPull, ready for :meth:`merge_some` (None: it failed)."""
        joining = src in self._join_destinations
        self._join_destinations.discard(src)
        core = self._node.open_push_pull_response(response)
        return None if core is None else PushPullMerge(core, joining)

    def merge_some(self, job: PushPullMerge, now: float, limit: int) -> list[Effect]:
        """Merge about ``limit`` more units (member records, then Serf state entries) of
        ``job``; call again until ``job.done``. An item that changes something costs
        MERGE_CHANGE_COST units, one that changes nothing one unit, so each call's cost
        is bounded by ``limit`` and a shell can merge a fleet's state without holding
        its loop."""
        if not job.core.done:
            core_effects = self._node.merge_some(job.core, now, limit)
            # The job takes its Serf state (the core's MergeRemoteState) for itself.
            return self._drive(core_effects, now, joining=job.joining, job=job)
        if job.steps is None or job.serf is None:
            return []
        out: list[Effect] = []
        job.serf.now = now
        job.serf.out = out
        budget = max(limit, 1)
        while budget > 0:
            produced = len(out)
            if next(job.steps, _DONE) is _DONE:
                job.steps = None
                break
            budget -= 1 if len(out) == produced else MERGE_CHANGE_COST
        return out

    def merge_all(self, job: PushPullMerge, now: float) -> list[Effect]:
        """Merge the whole of ``job`` at once."""
        out: list[Effect] = []
        while not job.done:
            out.extend(self.merge_some(job, now, 1 << 30))
        return out

    def push_pull_reply(self) -> bytes:
        """Our framed state, the answer to a peer's push-pull."""
        return self._node.push_pull_reply()

    def stream_ping_response(self, seq_no: int, response: bytes | None, now: float) -> list[Effect]:
        """The outcome of a StartStreamPing (GossipNode.stream_ping_response)."""
        return self._drive(self._node.stream_ping_response(seq_no, response, now), now)

    def answer_stream_ping(self, request: bytes) -> bytes:
        """Our ack to a peer's ping over the stream port; raises StreamPingRefused."""
        return self._node.answer_stream_ping(request)

    def join(self, seeds: Sequence[Address], now: float, *, replay: bool = False) -> list[Effect]:
        """Join through ``seeds`` (push-pull with each) and announce our join intent.

        With ``replay=False`` user events older than the join are not delivered
        (serf Join ignoreOld / eventJoinIgnore).
        """
        if self._state is _LocalState.LEAVING:
            raise FailedPrecondition("a leave is in progress")
        out: list[Effect] = []
        if self._state is _LocalState.LEFT:
            self._state = _LocalState.ALIVE
            self._members[self.name].status = MemberStatus.ALIVE
            if self.config.snapshot_records:
                local = self._members[self.name]
                out.extend(self._writer.alive(local.name, local.address))
        self._join_ignore_old = not replay
        core_effects = self._node.join(seeds, now)
        for effect in core_effects:
            if isinstance(effect, StartPushPull) and effect.join:
                self._join_destinations.add(effect.dest)
        # serf.go Join: broadcastJoin(clock.Time()) stamps our join for everyone.
        self._broadcast_join(self._clock.time(), now)
        out.extend(self._drive(core_effects, now))
        return out

    def rejoin(self, now: float) -> list[Effect]:
        """Join the members of the snapshot given at construction (serf handleRejoin).

        Events after the snapshot's event clock are delivered (they were missed while
        down); older ones are not, thanks to the restored minimum event time.
        """
        if self._snapshot is None:
            return []
        seeds = self._snapshot.addresses(exclude=self.name)
        if not seeds:
            return []
        return self.join(seeds, now, replay=True)

    def leave(self, now: float) -> list[Effect]:
        """Broadcast our leave intent, mark ourselves leaving, then leave the gossip core.

        Keep calling :meth:`tick` until :meth:`leave_done` (at most
        ``broadcast_timeout + leave_propagate_delay``), then stop.
        """
        if self._state is not _LocalState.ALIVE:
            return []
        self._state = _LocalState.LEAVING
        out: list[Effect] = []
        if self.config.snapshot_records:
            out.extend(self._writer.leave())
        # serf.go Leave: the intent carries the current time, then the clock moves on.
        ltime = self._clock.time()
        self._clock.increment()
        self._on_leave_intent(self.name, ltime, False, now, out)
        alive_peers = self._has_alive_members()
        if alive_peers:
            self._broadcast(messages.encode_leave_intent(self.name, ltime, False), now)
        self._leave_started = now
        self._leave_drained = None if alive_peers else now
        out.extend(self._drive(self._node.leave(now), now))
        return out

    def leave_done(self, now: float) -> bool:
        """True once the leave broadcasts went out (or timed out) and had time to spread."""
        if self._state is _LocalState.LEFT:
            return True
        if self._state is not _LocalState.LEAVING:
            return False
        if self._leave_drained is None and self._node.broadcast_queue_depth == 0:
            self._leave_drained = now
        if now < self._leave_deadline():
            return False
        self._state = _LocalState.LEFT
        self._members[self.name].status = MemberStatus.LEFT
        self._members[self.name].leave_time = now
        return True

    # ------------------------------------------------------------------ Serf API

    def update_tags(
        self,
        set: Mapping[str, str],  # the interface's name; shadows the builtin only here
        delete: Iterable[str],
        now: float,
    ) -> list[Effect]:
        """Set and delete tags; gossips the new tags and emits member-update."""
        local = self._members[self.name]
        tags = dict(local.tags)
        tags.update(set)
        for key in delete:
            tags.pop(key, None)
        meta = check_tags(tags, self._node.config.max_meta_size)
        core_effects = self._node.update_meta(meta, now)
        local.tags = tags
        out: list[Effect] = []
        self._emit_member(EventType.MEMBER_UPDATE, local, now, out)
        out.extend(self._drive(core_effects, now))
        return out

    def fire_user_event(
        self, name: str, payload: bytes, coalesce: bool, now: float
    ) -> tuple[int, list[Effect]]:
        """Broadcast a user event to every member (this one included); returns its time."""
        check_user_event(name, payload, self.config.user_event_size_limit)
        event = BufferedEvent(self._event_clock.time(), name, payload, coalesce)
        raw = messages.encode_user_event(event)
        try:
            self._node.broadcast_user(raw, now)
        except PayloadTooLarge as error:
            raise InvalidArgument.for_field(
                "payload", f"the event does not fit in one gossip packet: {error}"
            ) from error
        # serf.go UserEvent: the event takes the current time, then the clock moves on.
        self._event_clock.increment()
        self.stats.user_events_fired += 1
        out: list[Effect] = []
        self._on_user_event(event, now, out)
        return event.lamport_time, out

    def coordinate_of(self, name: str, field: str = "node") -> Coordinate:
        """serf.go GetCachedCoordinate: ours, or the one a member sent in its last ack.

        InvalidArgument for a bad name, NotFound for an unknown member or one not yet
        probed, FailedPrecondition when coordinates are disabled."""
        check_node_name(name, field)
        if self.coordinates is None:
            raise FailedPrecondition(
                "network coordinates are disabled on this agent (disable_coordinates)"
            )
        coordinate = None
        if name == self.name or name in self._members:
            coordinate = self.coordinates.get(name)
        if coordinate is None:
            raise NotFound(f"{field}: no coordinate is known for member {name!r}")
        return coordinate

    def distances_from(
        self, near: str, names: Iterable[str], field: str = "near"
    ) -> dict[str, float]:
        """Consul's ``?near=``: the estimated round trip (seconds) from member ``near``
        (``"_agent"``: this agent) to each of ``names`` whose coordinate is known.

        A bad name raises InvalidArgument naming ``field``. Empty, so that the caller
        keeps its order, when coordinates are disabled or ``near`` has no known
        coordinate (Consul's sortNodesByDistanceFrom leaves the list alone then)."""
        source_name = self.name if near == NEAR_AGENT else near
        check_node_name(source_name, field)
        coordinates = self.coordinates
        if coordinates is None:
            return {}
        source = None
        if source_name == self.name or source_name in self._members:
            source = coordinates.get(source_name)
        if source is None:
            return {}
        distances = {}
        for name in names:
            target = coordinates.get(name)
            if target is not None:
                distances[name] = source.distance_to(target)
        return distances

    def force_leave(self, name: str, prune: bool, now: float) -> list[Effect]:
        """Move a failed member to left everywhere (serf RemoveFailedNode); ``prune`` erases it.

        Unknown names raise NotFound. Alive members raise FailedPrecondition: Serf would
        broadcast the intent and the member would refute it at once, so nothing changes.
        """
        check_node_name(name)
        state = self._members.get(name)
        if state is None:
            raise NotFound(f"member {name!r} is not known")
        if name == self.name:
            raise FailedPrecondition("the local member cannot be forced to leave; use leave")
        if state.status is MemberStatus.ALIVE:
            raise FailedPrecondition(
                f"member {name!r} is alive; only failed or left members can be forced to leave"
            )
        out: list[Effect] = []
        ltime = self._clock.time()
        self._clock.increment()
        self._on_leave_intent(name, ltime, prune, now, out)
        if self._has_alive_members():
            self._broadcast(messages.encode_leave_intent(name, ltime, prune), now)
        return out

    # ------------------------------------------------------------------ channels

    def add_channel(self, channel: str, state_provider: StateProvider | None = None) -> None:
        """Registers a subsystem channel; `state_provider` supplies its full state for
        push-pull exchanges (peers receive it as ChannelStateReceived)."""
        if not CHANNEL_NAME.fullmatch(channel):
            raise InvalidArgument.for_field("channel", "must be 1 to 32 bytes of [a-z0-9_-]")
        if state_provider is not None:
            self._channel_providers[channel] = state_provider

    def send(self, channel: str, payload: bytes, now: float) -> None:
        """Broadcasts a subsystem message to every other member (not delivered here)."""
        if not CHANNEL_NAME.fullmatch(channel):
            raise InvalidArgument.for_field("channel", "must be 1 to 32 bytes of [a-z0-9_-]")
        message_id = self._rng.getrandbits(64)
        self._remember_channel_message((channel, self.name, message_id))
        raw = messages.encode_channel_message(channel, self.name, message_id, payload)
        try:
            self._node.broadcast_user(raw, now)
        except PayloadTooLarge as error:
            raise InvalidArgument.for_field("payload", str(error)) from None

    def _remember_channel_message(self, key: tuple[str, str, int]) -> bool:
        """True the first time `key` is seen."""
        if key in self._channel_seen:
            return False
        self._channel_seen[key] = None
        if len(self._channel_seen) > CHANNEL_DEDUPE_SIZE:
            self._channel_seen.popitem(last=False)
        return True

    # ------------------------------------------------------------------ push-pull state

    def local_state(self, join: bool) -> bytes:
        """The layer's push-pull state (serf delegate.go LocalState); the core asks for
        it (its user-state provider) each time it builds a push-pull state."""
        rest = messages.encode_state(
            self._clock.time(),
            {},
            list(self._census.left),
            self._event_clock.time(),
            self._events.events(),
            {channel: provide() for channel, provide in self._channel_providers.items()},
        )
        # Status times are the part that grows with the cluster: each member's field is
        # encoded once per intent and joined (protobuf fields concatenate).
        encode = self._status_time_field
        fields = [state.status_field or encode(state) for state in self._members.values()]
        return rest + b"".join(fields)

    def _status_time_field(self, state: _Member) -> bytes:
        if state.status_field is None:
            state.status_field = messages.status_time_field(state.name, state.status_ltime)
        return state.status_field

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        """A peer's push-pull state (serf delegate.go MergeRemoteState), checked now and
        merged by the next entry point, as a ``MergeRemoteState`` from the core outside
        a chunked merge is."""
        serf = self._open_remote_state(data, joining=False)
        if serf is not None:
            self._deferred_states.append(serf)

    def _open_remote_state(self, data: bytes, *, joining: bool) -> _SerfMerge | None:
        """A peer's Serf state ready to merge, or None (counted) when it is refused."""
        state = messages.decode_state(data)
        if state is None:
            self.stats.drop("state_decode")
            return None
        limit = self._node.config.max_nodes
        if len(state.status_times) > limit or len(state.left_members) > limit:
            # More entries than members this agent would ever keep: not a state of
            # its cluster, and merging it would only cost time.
            self.stats.drop("state_too_large")
            return None
        if not (
            self._clock_reaches(state.lamport_time, self._clock, MAX_LAMPORT_CATCH_UP)
            and self._clock_reaches(
                state.event_lamport_time, self._event_clock, MAX_LAMPORT_CATCH_UP
            )
        ):
            return None  # a state from no cluster of ours: none of its times is believed
        return _SerfMerge(state, ignore_old=joining and self._join_ignore_old)

    # ------------------------------------------------------------------ internals

    def _info(self, state: _Member) -> MemberInfo:
        # The core may have raised the incarnation (a suspicion, a refutation) without
        # an event of this layer; the info follows it.
        incarnation = self._node.incarnation_of(state.name, state.address)
        if incarnation is None:
            incarnation = state.incarnation
        info = state.info
        if info is not None and info.incarnation == incarnation:
            return info
        info = MemberInfo(
            name=state.name,
            address=state.address,
            tags=MappingProxyType(dict(state.tags)),
            status=state.status,
            incarnation=incarnation,
        )
        state.info = info
        return info

    def _add_member(self, state: _Member) -> None:
        state.census = self._census
        self._census.count(state, 1)
        self._members[state.name] = state
        self._sorted_states = None

    def _remove_member(self, name: str) -> None:
        state = self._members.pop(name, None)
        if state is None:
            return
        self._census.count(state, -1)
        state.census = None
        self._sorted_states = None

    def _has_alive_members(self) -> bool:
        """Whether a member other than this one is alive (O(1))."""
        local_alive = self._members[self.name].status is MemberStatus.ALIVE
        return self._census.alive - local_alive > 0

    def _leave_deadline(self) -> float:
        sent = self._leave_started + self.config.broadcast_timeout
        if self._leave_drained is not None:
            sent = min(sent, self._leave_drained)
        return sent + self.config.leave_propagate_delay

    def _broadcast(self, raw: bytes, now: float) -> None:
        try:
            self._node.broadcast_user(raw, now)
        except PayloadTooLarge:
            self.stats.drop("rebroadcast_too_large")

    def _broadcast_join(self, ltime: int, now: float) -> None:
        """serf.go broadcastJoin: stamp our join locally and gossip it."""
        self._clock.witness(ltime)
        self._on_join_intent(self.name, ltime, now)
        self._broadcast(messages.encode_join_intent(self.name, ltime), now)

    def _drive(
        self,
        core_effects: list[CoreEffect],
        now: float,
        *,
        joining: bool = False,
        job: PushPullMerge | None = None,
    ) -> list[Effect]:
        out: list[Effect] = []
        for effect in core_effects:
            if isinstance(effect, MergeRemoteState):
                # Checked before the member effects, merged after them (memberlist merges
                # nodes before calling MergeRemoteState): by ``job`` a slice at a time
                # in a chunked merge, else at the end of this call.
                serf = self._open_remote_state(effect.data, joining=joining)
                if serf is None:
                    continue
                if job is not None:
                    job.serf = serf
                    job.steps = self._merge_state_steps(serf)
                else:
                    self._deferred_states.append(serf)
        for effect in core_effects:
            if isinstance(
                effect, SendPacket | StartPushPull | StartStreamPing | ReachedOnlyByStream
            ):
                out.append(effect)
            elif isinstance(effect, NameConflict):
                # In the answer to our own join, the name was taken before we came: we
                # are the newcomer (Serf shuts the loser of a name conflict down).
                out.append(replace(effect, joining=joining))
            elif isinstance(effect, MemberJoined):
                self._on_core_joined(effect.member, now, out)
            elif isinstance(effect, MemberLeft):
                self._on_core_left(effect.member, effect.left, now, out)
            elif isinstance(effect, MemberUpdated):
                self._on_core_updated(effect.member, now, out)
            elif isinstance(effect, MemberReaped):
                self._on_core_reaped(effect.member, now, out)
            elif isinstance(effect, UserMessage):
                self._on_broadcast(effect.payload, now, out)
            elif (
                isinstance(effect, PingComplete)
                and self.coordinates is not None
                and effect.node in self._members
            ):
                self.coordinates.ping_complete(effect.node, effect.rtt, effect.coordinate)
        while self._deferred_states:
            serf = self._deferred_states.pop(0)
            serf.now, serf.out = now, out
            for _ in self._merge_state_steps(serf):
                pass
        return out

    # --- core member events (serf.go handleNodeJoin / handleNodeLeave / handleNodeUpdate)

    def _on_core_joined(self, member: Member, now: float, out: list[Effect]) -> None:
        if member.name == self.name:
            return
        tags = decode_tags(member.meta)
        state = self._members.get(member.name)
        if state is None:
            state = _Member(member.name, member.address, tags, MemberStatus.ALIVE, 0)
            # An intent that arrived before the member: the newest one wins.
            joined = self._intents.recent(member.name, IntentType.JOIN)
            if joined is not None:
                state.status_ltime = joined
            left = self._intents.recent(member.name, IntentType.LEAVE)
            if left is not None:
                state.status = MemberStatus.LEAVING
                state.status_ltime = left
            self._intents.discard(member.name)
            self._add_member(state)
        else:
            state.status = MemberStatus.ALIVE
            state.leave_time = 0.0
            state.address = member.address
            state.tags = tags
            self._pending_prunes.pop(member.name, None)
        state.incarnation = member.incarnation
        if self.config.snapshot_records:
            out.extend(self._writer.alive(state.name, state.address))
        self._emit_member(EventType.MEMBER_JOIN, state, now, out)

    def _on_core_left(self, member: Member, left: bool, now: float, out: list[Effect]) -> None:
        state = self._members.get(member.name)
        if state is None or member.name == self.name:
            return
        # The core tells a graceful leave (a dead message from the member itself) from a
        # failure, so a leave whose intent was lost still shows as left, never failed.
        if state.status is MemberStatus.LEAVING or (left and state.status is MemberStatus.ALIVE):
            state.status = MemberStatus.LEFT
            event = EventType.MEMBER_LEAVE
        elif state.status is MemberStatus.ALIVE:
            state.status = MemberStatus.FAILED
            event = EventType.MEMBER_FAILED
        else:
            return
        state.leave_time = now
        state.incarnation = member.incarnation
        if self.config.snapshot_records:
            out.extend(self._writer.not_alive(state.name))
        self._emit_member(event, state, now, out)

    def _on_core_updated(self, member: Member, now: float, out: list[Effect]) -> None:
        state = self._members.get(member.name)
        if state is None or member.name == self.name:
            return
        state.address = member.address
        state.tags = decode_tags(member.meta)
        state.incarnation = member.incarnation
        self._emit_member(EventType.MEMBER_UPDATE, state, now, out)

    def _on_core_reaped(self, member: Member, now: float, out: list[Effect]) -> None:
        state = self._members.get(member.name)
        if state is not None and state.status in (MemberStatus.FAILED, MemberStatus.LEFT):
            self._erase(state, now, out, pruned=False)

    # --- broadcasts (serf.go handleNodeJoinIntent / handleNodeLeaveIntent / handleUserEvent)

    def _on_broadcast(self, payload: bytes, now: float, out: list[Effect]) -> None:
        message = messages.decode_message(payload)
        if message is None:
            self.stats.drop("decode")
            return
        kind = message.WhichOneof("body")
        rebroadcast = False
        if kind == "join_intent":
            intent = message.join_intent
            self.stats.join_intents_received += 1
            if not valid_node_name(intent.node):
                self.stats.drop("invalid_message")
            elif self._clock_reaches(intent.lamport_time, self._clock):
                rebroadcast = self._on_join_intent(intent.node, intent.lamport_time, now)
        elif kind == "leave_intent":
            leave = message.leave_intent
            self.stats.leave_intents_received += 1
            if not valid_node_name(leave.node):
                self.stats.drop("invalid_message")
            elif self._clock_reaches(leave.lamport_time, self._clock):
                rebroadcast = self._on_leave_intent(
                    leave.node, leave.lamport_time, leave.prune, now, out
                )
        elif kind == "user_event":
            event = message.user_event
            if not 0 < len(event.name.encode()) <= MAX_EVENT_NAME_SIZE:
                self.stats.drop("invalid_message")
            elif self._clock_reaches(event.lamport_time, self._event_clock):
                rebroadcast = self._on_user_event(messages.buffered(event), now, out)
        elif kind == "channel_message":
            body = message.channel_message
            if CHANNEL_NAME.fullmatch(body.channel) and valid_node_name(body.origin):
                rebroadcast = self._remember_channel_message((body.channel, body.origin, body.id))
                if rebroadcast and body.origin != self.name:
                    out.append(ChannelDelivery(body.channel, body.origin, body.payload))
            else:
                self.stats.drop("invalid_message")
        else:
            self.stats.drop("invalid_message")
        if rebroadcast:
            # Serf re-broadcasts what it had not seen, unchanged: the core delivers each
            # broadcast once and does not gossip it further.
            self.stats.rebroadcasts += 1
            self._broadcast(payload, now)

    def _clock_reaches(self, ltime: int, clock: LamportClock, step: int = MAX_LAMPORT_STEP) -> bool:
        """A Lamport time from the network within ``step`` of ``clock``; else counted
        (``lamport_out_of_range``) and refused: see lamport.py MAX_LAMPORT_STEP."""
        if within_reach(ltime, clock.time(), step):
            return True
        self.stats.drop("lamport_out_of_range")
        return False

    def _on_join_intent(self, node: str, ltime: int, now: float) -> bool:
        self._clock.witness(ltime)
        state = self._members.get(node)
        if state is None:
            return self._intents.upsert(node, IntentType.JOIN, ltime, now)
        if ltime <= state.status_ltime:
            return False
        state.status_ltime = ltime
        # A newer join means the leave we saw was older: the member stays.
        if state.status is MemberStatus.LEAVING:
            state.status = MemberStatus.ALIVE
        return True

    def _on_leave_intent(
        self, node: str, ltime: int, prune: bool, now: float, out: list[Effect]
    ) -> bool:
        self._clock.witness(ltime)
        state = self._members.get(node)
        if state is None:
            return self._intents.upsert(node, IntentType.LEAVE, ltime, now)
        if ltime <= state.status_ltime:
            return False
        if node == self.name and self._state is _LocalState.ALIVE:
            # Refute a leave intent about us (an old one, or someone's ForceLeave).
            self._broadcast_join(self._clock.time(), now)
            return False
        # Always record the time, so the same leave arriving again is not re-broadcast
        # forever (serf.go handleNodeLeaveIntent).
        state.status_ltime = ltime
        if state.status is MemberStatus.ALIVE:
            state.status = MemberStatus.LEAVING
            if prune:
                self._schedule_prune(state, now)
            return True
        if state.status is MemberStatus.FAILED:
            state.status = MemberStatus.LEFT
            # A left member is not retried: it must not come back by reconnect (Serf
            # removes it from failedMembers).
            self._node.mark_left(node)
            self._emit_member(EventType.MEMBER_LEAVE, state, now, out)
            if prune:
                self._erase(state, now, out, pruned=True)
            return True
        if state.status in (MemberStatus.LEAVING, MemberStatus.LEFT):
            if prune:
                if state.status is MemberStatus.LEAVING:
                    self._schedule_prune(state, now)
                else:
                    self._erase(state, now, out, pruned=True)
            return True
        return False

    def _schedule_prune(self, state: _Member, now: float) -> None:
        """serf.go handlePrune: a leaving member is erased once its leave had time to spread."""
        if state.name == self.name:
            return
        delay = self.config.broadcast_timeout + self.config.leave_propagate_delay
        self._pending_prunes[state.name] = now + delay

    def _on_user_event(self, event: BufferedEvent, now: float, out: list[Effect]) -> bool:
        self._event_clock.witness(event.lamport_time)
        admission = self._events.admit(event, self._event_clock.time())
        if admission is EventAdmission.DUPLICATE:
            self.stats.user_events_duplicate += 1
            return False
        if admission is not EventAdmission.NEW:
            self.stats.user_events_old += 1
            return False
        self.stats.user_events_delivered += 1
        if self.config.snapshot_records:
            out.extend(self._writer.event_clock(event.lamport_time))
        user = UserEvent(event.name, event.payload, event.lamport_time, event.coalesce)
        if self._user_coalescer is not None:
            out.extend(self._user_coalescer.add(user, now))
        else:
            out.append(user)
        return True

    def _merge_state_steps(self, merge: _SerfMerge) -> Iterator[None]:
        """serf delegate.go MergeRemoteState, one entry per step; effects go to
        ``merge.out`` and time is ``merge.now`` as the caller sets them."""
        state = merge.state
        if state.lamport_time > 0:
            self._clock.witness(state.lamport_time - 1)
        if state.event_lamport_time > 0:
            self._event_clock.witness(state.event_lamport_time - 1)
        times: dict[str, int] = {}
        for status_time in state.status_times:
            if valid_node_name(status_time.node) and self._clock_reaches(
                status_time.lamport_time, self._clock
            ):
                times[status_time.node] = status_time.lamport_time
            yield
        left = {name for name in state.left_members if valid_node_name(name)}
        for name in sorted(left):
            # A tombstone is a leave intent just newer than the status time we were told.
            self._on_leave_intent(name, times.get(name, 0) + 1, False, merge.now, merge.out)
            yield
        for name, ltime in times.items():
            if name not in left:
                self._on_join_intent(name, ltime, merge.now)
                member = self._members.get(name)
                if member is not None:
                    # Encode the entry for our own state now, a slice at a time, rather
                    # than all at once in the next reply.
                    self._status_time_field(member)
                yield
        if merge.ignore_old and self._join_ignore_old:
            # serf eventJoinIgnore: events before the join are history, not news.
            self._events.raise_min_time(state.event_lamport_time)
        for record in state.recent_events:
            if 0 < len(record.name.encode()) <= MAX_EVENT_NAME_SIZE and self._clock_reaches(
                record.lamport_time, self._event_clock
            ):
                self._on_user_event(messages.buffered(record), merge.now, merge.out)
                yield
        for channel_state in state.channel_states:
            if CHANNEL_NAME.fullmatch(channel_state.channel):
                merge.out.append(ChannelStateReceived(channel_state.channel, channel_state.state))

    # --- reaping and events

    def _reap(self, now: float, out: list[Effect]) -> None:
        """serf.go handleReap: failed after reconnect_timeout, left after tombstone_timeout."""
        for state in list(self._members.values()):
            if state.name == self.name:
                continue
            if state.status is MemberStatus.FAILED:
                timeout = self.config.reconnect_timeout
            elif state.status is MemberStatus.LEFT:
                timeout = self.config.tombstone_timeout
            else:
                continue
            if now - state.leave_time > timeout:
                self._erase(state, now, out, pruned=False)
        self._intents.reap(now, self.config.recent_intent_timeout)

    def _erase(self, state: _Member, now: float, out: list[Effect], *, pruned: bool) -> None:
        """serf.go eraseNode: forget the member and emit member-reap."""
        self._remove_member(state.name)
        if self.coordinates is not None:
            # serf.go handleReap: ForgetNode and the coordinate cache entry go with it.
            self.coordinates.forget(state.name)
        self._pending_prunes.pop(state.name, None)
        if pruned:
            self.stats.members_pruned += 1
        else:
            self.stats.members_reaped += 1
        if self.config.snapshot_records:
            out.extend(self._writer.not_alive(state.name))
        self._emit_member(EventType.MEMBER_REAP, state, now, out)

    def _emit_member(self, type_: EventType, state: _Member, now: float, out: list[Effect]) -> None:
        event = MemberEvent(type_, (self._info(state),))
        if self._member_coalescer is not None:
            self._member_coalescer.add(event, now)
        else:
            out.append(event)

    def _flush_coalescers(self, now: float, out: list[Effect], *, force: bool) -> None:
        if self._member_coalescer is not None:
            out.extend(self._member_coalescer.flush(now, force=force))
        if self._user_coalescer is not None:
            out.extend(self._user_coalescer.flush(now, force=force))
