"""What the layer reports upward: member statuses, member snapshots and the event effects.

``MemberEvent`` and ``UserEvent`` are effects returned by :class:`Membership`
entry points, beside the core's ``SendPacket``/``StartPushPull`` and the
snapshot's ``SnapshotRecord`` (``snapshot.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.gossip.state import Address


class MemberStatus(enum.Enum):
    """Serf member statuses (serf.go MemberStatus)."""

    # No status (serf StatusNone): never seen in a member list; kept for API parity.
    NONE = 0
    ALIVE = 1
    # A leave intent arrived; the member is still gossiping while its leave spreads.
    LEAVING = 2
    # Left gracefully (or forced out with ForceLeave): a tombstone until reaped.
    LEFT = 3
    # Stopped answering probes: retried until reconnect_timeout, then reaped.
    FAILED = 4


class EventType(enum.Enum):
    """Serf event types (event.go)."""

    MEMBER_JOIN = "member-join"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_UPDATE = "member-update"
    MEMBER_REAP = "member-reap"
    USER = "user"


# There is no version negotiation (docs/gossip.md): every member speaks gossip protocol 1
# and membership protocol 1, reported in the fields Serf fills from memberlist's vsn.
PROTOCOL_VERSION = 1
DELEGATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member as this agent sees it (serf.go Member)."""

    name: str
    address: Address
    tags: Mapping[str, str]
    status: MemberStatus
    # The gossip incarnation of the member (raised by it on every refutation or update).
    incarnation: int
    protocol_min: int = PROTOCOL_VERSION
    protocol_max: int = PROTOCOL_VERSION
    protocol_current: int = PROTOCOL_VERSION
    delegate_min: int = DELEGATE_VERSION
    delegate_max: int = DELEGATE_VERSION
    delegate_current: int = DELEGATE_VERSION


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """Members joined, left, failed, were updated or reaped (one type per event)."""

    type: EventType
    members: tuple[MemberInfo, ...]


@dataclass(frozen=True, slots=True)
class UserEvent:
    """An application event fired on some member; delivered at most once per member."""

    name: str
    payload: bytes
    lamport_time: int
    coalesce: bool

    @property
    def type(self) -> EventType:
        return EventType.USER


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
    """A subsystem message received over gossip, delivered once per member."""

    channel: str
    origin: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class ChannelStateReceived:
    """A peer's full state of a subsystem channel, from a push-pull exchange."""

    channel: str
    state: bytes
