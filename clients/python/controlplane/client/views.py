"""Client-side state behind resumable watches: what was emitted, and what is new.

A watch stream that breaks is restarted on another agent, which begins again
with a full snapshot. The classes here hold the client's view and turn each
message (and each fresh snapshot) into only the changes the caller has not
seen, so a resumed watch neither repeats nor loses state. They do no I/O.

* `MemberView`: member name -> Member; a snapshot is diffed against the view
  into upserts and removals; an upsert that changes nothing is dropped.
* `RingTracker`: emits a ring snapshot only when its nodes (so its checksum)
  changed; versions are per agent, so a resumed stream with another version but
  the same nodes emits nothing.
* `LeaderTracker`: emits a leader view only when the leader or its epoch changed.
* `UserEventDeduper`: remembers recent (lamport_time, name) pairs so a user event
  seen through one agent and again through the next is delivered once.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.v1 import membership_pb2, ring_pb2

__all__ = [
    "EventUpdate",
    "LeaderTracker",
    "LeaderUpdate",
    "MemberChangeKind",
    "MemberView",
    "MembersUpdate",
    "RingTracker",
    "RingUpdate",
    "UserEventDeduper",
]

Member = membership_pb2.Member


class MemberChangeKind(enum.Enum):
    """What a `MembersUpdate` carries."""

    SNAPSHOT = "snapshot"
    """Every member; the first update of a watch."""
    UPSERT = "upsert"
    """Members that are new or changed."""
    REMOVED = "removed"
    """Members reaped or pruned from the list."""


@dataclass(frozen=True, slots=True)
class MembersUpdate:
    """One step of a member watch.

    `resumed` is True for the updates computed from the snapshot of a stream
    restarted on another agent (the difference with what was already emitted).
    """

    kind: MemberChangeKind
    members: tuple[Member, ...]
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class EventUpdate:
    """One event of an event watch.

    `resumed` is True on the first event received after the stream was restarted
    on another agent: events emitted while the client was reconnecting are not
    replayed, so some may be missing right before this one.
    """

    event: membership_pb2.Event
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class RingUpdate:
    """A new ring snapshot; `resumed` when first seen through a restarted stream."""

    ring: ring_pb2.RingSnapshot
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class LeaderUpdate:
    """A new leader view (`leader` is None while nobody holds a lease)."""

    leader: membership_pb2.Leader | None
    resumed: bool = False


class MemberView:
    """The members a watcher has been told about, and the diff of what comes next."""

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self._primed = False

    @property
    def members(self) -> Mapping[str, Member]:
        return MappingProxyType(self._members)

    def snapshot(self, members: Iterable[Member], *, resumed: bool) -> list[MembersUpdate]:
        """A stream's first message. The first ever is emitted as a SNAPSHOT; later
        ones (a resumed stream) only as the upserts and removals they imply."""
        incoming = {m.name: m for m in members}
        if not self._primed:
            self._primed = True
            self._members = incoming
            return [MembersUpdate(MemberChangeKind.SNAPSHOT, tuple(incoming.values()), resumed)]
        changed = [m for name, m in incoming.items() if self._members.get(name) != m]
        removed = [m for name, m in self._members.items() if name not in incoming]
        self._members = incoming
        updates: list[MembersUpdate] = []
        if changed:
            updates.append(MembersUpdate(MemberChangeKind.UPSERT, tuple(changed), resumed))
        if removed:
            updates.append(MembersUpdate(MemberChangeKind.REMOVED, tuple(removed), resumed))
        return updates

    def upsert(self, members: Iterable[Member]) -> list[MembersUpdate]:
        """Members new or changed; those equal to the view are dropped."""
        changed = []
        for member in members:
            if self._members.get(member.name) != member:
                self._members[member.name] = member
                changed.append(member)
        return [MembersUpdate(MemberChangeKind.UPSERT, tuple(changed))] if changed else []

    def remove(self, members: Iterable[Member]) -> list[MembersUpdate]:
        """Members removed; those already absent from the view are dropped."""
        removed = [self._members.pop(m.name) for m in members if m.name in self._members]
        return [MembersUpdate(MemberChangeKind.REMOVED, tuple(removed))] if removed else []

    def apply(
        self, message: membership_pb2.WatchMembersResponse, *, first: bool, resumed: bool
    ) -> list[MembersUpdate]:
        """Dispatches one WatchMembers message; `first` marks a stream's first message."""
        if message.change == membership_pb2.MEMBER_CHANGE_SNAPSHOT or first:
            return self.snapshot(message.members, resumed=resumed)
        if message.change == membership_pb2.MEMBER_CHANGE_REMOVED:
            return self.remove(message.members)
        return self.upsert(message.members)


class RingTracker:
    """The last ring snapshot emitted; decides whether a new one is news."""

    def __init__(self) -> None:
        self.current: ring_pb2.RingSnapshot | None = None

    def accept(self, snapshot: ring_pb2.RingSnapshot, *, resumed: bool) -> RingUpdate | None:
        previous = self.current
        if previous is not None and (
            previous.checksum == snapshot.checksum and list(previous.nodes) == list(snapshot.nodes)
        ):
            # Same placement and metadata; only the answering agent's version
            # counter may differ. Keep the newest version for callers.
            self.current = snapshot
            return None
        self.current = snapshot
        return RingUpdate(snapshot, resumed)


class LeaderTracker:
    """The last leader view emitted; decides whether a new one is news."""

    _UNSET = object()

    def __init__(self) -> None:
        self._last: tuple[str, str, int] | object | None = self._UNSET

    def accept(self, leader: membership_pb2.Leader | None, *, resumed: bool) -> LeaderUpdate | None:
        key = None if leader is None else (leader.name, leader.address, leader.epoch)
        if key == self._last:
            return None
        self._last = key
        return LeaderUpdate(leader, resumed)


class UserEventDeduper:
    """Remembers the last `capacity` user events by (lamport_time, name)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._seen: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, event: membership_pb2.Event) -> bool:
        """False for a user event already delivered; member events always pass."""
        if event.type != membership_pb2.EVENT_TYPE_USER:
            return True
        key = (event.user.lamport_time, event.user.name)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


# ---------------------------------------------------------------- stream handlers
# A Watch (blocking or asyncio) feeds each stream message to a handler with
# whether it is the first message of a (re)opened stream and whether the stream
# was resumed after a failure; the handler returns the updates to emit.

MembersHandler = Callable[[membership_pb2.WatchMembersResponse, bool, bool], list[MembersUpdate]]
EventsHandler = Callable[[membership_pb2.WatchEventsResponse, bool, bool], list[EventUpdate]]
LeaderHandler = Callable[[membership_pb2.WatchLeaderResponse, bool, bool], list[LeaderUpdate]]
RingHandler = Callable[[ring_pb2.WatchRingResponse, bool, bool], list[RingUpdate]]


def members_handler() -> MembersHandler:
    view = MemberView()

    def handle(
        message: membership_pb2.WatchMembersResponse, first: bool, resumed: bool
    ) -> list[MembersUpdate]:
        return view.apply(message, first=first, resumed=resumed)

    return handle


def events_handler() -> EventsHandler:
    """User events deduplicated; the first event after a resume is marked resumed
    (events emitted while the stream was down are not replayed)."""
    deduper = UserEventDeduper()
    gap = [False]

    def handle(
        message: membership_pb2.WatchEventsResponse, first: bool, resumed: bool
    ) -> list[EventUpdate]:
        if first and resumed:
            gap[0] = True
        if not deduper.first_time(message.event):
            return []
        update = EventUpdate(message.event, gap[0])
        gap[0] = False
        return [update]

    return handle


def leader_handler() -> LeaderHandler:
    tracker = LeaderTracker()

    def handle(
        message: membership_pb2.WatchLeaderResponse, first: bool, resumed: bool
    ) -> list[LeaderUpdate]:
        leader = message.leader if message.HasField("leader") else None
        update = tracker.accept(leader, resumed=resumed and first)
        return [update] if update else []

    return handle


def ring_handler() -> RingHandler:
    tracker = RingTracker()

    def handle(message: ring_pb2.WatchRingResponse, first: bool, resumed: bool) -> list[RingUpdate]:
        update = tracker.accept(message.ring, resumed=resumed and first)
        return [update] if update else []

    return handle
