"""Lease leader election with fencing epochs (sans-IO); see ``docs/election.md``.

Owns who leads: ``Election`` (the state machine), its configuration, the lease
arithmetic, the epoch rules and the wire messages. Time comes in as ``now``
from each member's own monotonic clock; messages come in as bytes and go out
as ``Send`` (to one member) and ``Broadcast`` (gossip, changes of leadership
only) effects.
"""

from controlplane.configerror import ConfigError
from controlplane.election.config import ElectionConfig
from controlplane.election.effects import (
    Broadcast,
    Effect,
    ElectionStatus,
    LeaderChanged,
    LeaderView,
    MemberView,
    Send,
    SettingsDiffer,
)
from controlplane.election.election import Election, Role
from controlplane.election.fencing import MAX_EPOCH, FencingToken, next_epoch, token, valid_epoch
from controlplane.election.lease import (
    drift_factor,
    failover_bound,
    follower_expiry,
    holder_expiry,
    is_safe,
    min_safe_skew,
    send_time_bound,
    view_expiry,
)
from controlplane.election.messages import (
    MAX_MESSAGE_BYTES,
    Echo,
    InquiryMessage,
    LeaseMessage,
    Message,
    MessageError,
    ReleaseMessage,
    ViewMessage,
    VoteMessage,
    decode,
)

__all__ = [
    "MAX_EPOCH",
    "MAX_MESSAGE_BYTES",
    "Broadcast",
    "ConfigError",
    "Echo",
    "Effect",
    "Election",
    "ElectionConfig",
    "ElectionStatus",
    "FencingToken",
    "InquiryMessage",
    "LeaderChanged",
    "LeaderView",
    "LeaseMessage",
    "MemberView",
    "Message",
    "MessageError",
    "ReleaseMessage",
    "Role",
    "Send",
    "SettingsDiffer",
    "ViewMessage",
    "VoteMessage",
    "decode",
    "drift_factor",
    "failover_bound",
    "follower_expiry",
    "holder_expiry",
    "is_safe",
    "min_safe_skew",
    "next_epoch",
    "send_time_bound",
    "token",
    "valid_epoch",
    "view_expiry",
]
