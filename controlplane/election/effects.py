"""What the election hands back to its shell, and the views it takes and gives.

The core never does I/O: every call returns a list of effects. ``Send`` goes to
one member only (a direct datagram to its gossip address); ``Broadcast`` goes to
every member through the gossip layer and is used only for changes of
leadership; ``LeaderChanged`` is published to watchers (the leader Watch RPC,
logs); ``SettingsDiffer`` is for the operator's log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberView:
    """What the membership layer knows of one member: its rank tag and liveness."""

    rank: int | None
    alive: bool


@dataclass(frozen=True, slots=True)
class LeaderView:
    """The leader as one member believes it now; ``epoch`` is the fencing token."""

    name: str
    epoch: int
    lease_remaining: float
    is_self: bool


@dataclass(frozen=True, slots=True)
class ElectionStatus:
    """Why this member knows of no leader, and when it expects one.

    ``state`` is a short word (see ``protos/controlplane/v1/membership.proto``,
    ``ElectionStatus``), ``reason`` a sentence for people, and ``expected_within``
    an upper bound in seconds until a leader is expected, or None without one.
    """

    state: str
    reason: str
    expected_within: float | None


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` to member ``to`` alone; it is never forwarded."""

    to: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Gossip ``data`` to every member: a leadership began or ended."""

    data: bytes


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This member's belief about who leads changed (new holder, new epoch, or none)."""

    view: LeaderView | None


@dataclass(frozen=True, slots=True)
class SettingsDiffer:
    """This member refuses ``holder``'s requests: the holder runs with a
    ``lease_time`` other than this member's. Reported once per holder."""

    holder: str
    lease_time: float


Effect = Send | Broadcast | LeaderChanged | SettingsDiffer
