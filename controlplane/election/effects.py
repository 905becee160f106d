"""What the election hands back to its shell, and the views it takes and gives.

The core never does I/O: every call returns a list of effects. ``Broadcast``
goes to the gossip layer's user broadcast; ``LeaderChanged`` is published to
watchers (the leader Watch RPC, logs).
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
class Broadcast:
    """Send ``data`` to the cluster.

    ``to`` is a routing hint: only that member acts on the message (a vote). A
    shell with point-to-point delivery may send it there alone; a shell that
    only broadcasts may ignore the hint, since every other member drops it.
    """

    data: bytes
    to: str | None = None


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This member's belief about who leads changed (new holder, new epoch, or none)."""

    view: LeaderView | None


Effect = Broadcast | LeaderChanged
