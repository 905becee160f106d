"""Lease leader election with fencing epochs (sans-IO); see ``docs/election.md``.

Owns who leads: ``Election`` (the state machine), its configuration, the lease
arithmetic, the epoch rules and the wire messages. Time comes in as ``now``
from each member's own monotonic clock; messages come in as bytes and go out
as ``Broadcast`` effects.
"""

from controlplane.election.config import ElectionConfig, ElectionConfigError
from controlplane.election.effects import (
    Broadcast,
    Effect,
    LeaderChanged,
    LeaderView,
    MemberView,
)
from controlplane.election.election import Election, Role
from controlplane.election.fencing import FencingToken, next_epoch, token
from controlplane.election.lease import (
    failover_bound,
    follower_expiry,
    holder_expiry,
    is_safe,
    min_safe_skew,
)
from controlplane.election.messages import (
    MAX_MESSAGE_BYTES,
    LeaseMessage,
    Message,
    MessageError,
    ReleaseMessage,
    VoteMessage,
    decode,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Broadcast",
    "Effect",
    "Election",
    "ElectionConfig",
    "ElectionConfigError",
    "FencingToken",
    "LeaderChanged",
    "LeaderView",
    "LeaseMessage",
    "MemberView",
    "Message",
    "MessageError",
    "ReleaseMessage",
    "Role",
    "VoteMessage",
    "decode",
    "failover_bound",
    "follower_expiry",
    "holder_expiry",
    "is_safe",
    "min_safe_skew",
    "next_epoch",
    "token",
]
