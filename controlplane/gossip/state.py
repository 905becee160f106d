"""Member records: the mutable per-member state of the core and its immutable snapshot."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Address = tuple[str, int]


class NodeStatus(enum.IntEnum):
    """SWIM member states; values match ``MemberStatus`` on the wire."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4

    @property
    def dead_or_left(self) -> bool:
        return self is NodeStatus.DEAD or self is NodeStatus.LEFT


@dataclass(frozen=True, slots=True)
class Member:
    """Snapshot of a member handed to the layer above (events, :meth:`GossipNode.members`)."""

    name: str
    address: Address
    meta: bytes
    incarnation: int
    status: NodeStatus


# The fields a push-pull record is made of: setting one drops the cached encoding.
_ENCODED_FIELDS = frozenset({"name", "address", "meta", "incarnation", "status"})


@dataclass(slots=True)
class NodeState:
    """What this member believes about one member (itself included)."""

    name: str
    address: Address
    meta: bytes
    incarnation: int
    status: NodeStatus
    # ``now`` of the last status change; drives gossip-to-the-dead, reconnect and reaping.
    state_change: float
    # This record's push-pull encoding, kept until a field it is made of changes: a
    # state of thousands of members is then one join, not thousands of encodings.
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _ENCODED_FIELDS:
            object.__setattr__(self, "encoded", None)
        object.__setattr__(self, name, value)

    def snapshot(self) -> Member:
        return Member(self.name, self.address, self.meta, self.incarnation, self.status)
