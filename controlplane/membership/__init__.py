"""The Serf layer (sans-IO): member statuses, tags, Lamport-ordered intents, user events,
coalescing, reconnect and reaping, ForceLeave and the snapshot file.

Public surface::

    m = Membership(gossip_config, MembershipConfig(), name, address, tags={...},
                   rng=random.Random(seed), now=t, keyring=None, label="", snapshot=None)
    m.join(seeds, now, replay=False) / m.rejoin(now) / m.leave(now) / m.leave_done(now)
    m.receive_packet / tick / next_deadline / handle_push_pull / push_pull_response
    job = m.open_push_pull(frame) | m.open_push_pull_response(src, frame)
    m.merge_some(job, now, limit) until job.done, then m.push_pull_reply()  # in slices
    m.members() / m.local_member() / m.member(name) / m.alive_count()
    m.update_tags(set, delete, now) / m.fire_user_event(name, payload, coalesce, now)
    m.force_leave(name, prune, now)
    parse_snapshot(data) -> (SnapshotState, problems)

Effects: the core's ``SendPacket`` and ``StartPushPull`` unchanged, plus
``MemberEvent``, ``UserEvent`` and ``SnapshotRecord``. See docs/membership.md.
"""

from controlplane.membership.config import (
    USER_EVENT_SIZE_HARD_LIMIT,
    InvalidConfig,
    MembershipConfig,
)
from controlplane.membership.events import (
    ChannelDelivery,
    ChannelStateReceived,
    EventType,
    MemberEvent,
    MemberInfo,
    MemberStatus,
    UserEvent,
)
from controlplane.membership.lamport import LamportClock
from controlplane.membership.layer import Effect, Membership, PushPullMerge
from controlplane.membership.snapshot import SnapshotRecord, SnapshotState, parse_snapshot
from controlplane.membership.stats import MembershipStats
from controlplane.membership.tags import decode_tags, encode_tags
from controlplane.membership.validation import MAX_EVENT_NAME_SIZE, MAX_NODE_NAME_LENGTH

__all__ = [
    "MAX_EVENT_NAME_SIZE",
    "MAX_NODE_NAME_LENGTH",
    "USER_EVENT_SIZE_HARD_LIMIT",
    "ChannelDelivery",
    "ChannelStateReceived",
    "Effect",
    "EventType",
    "InvalidConfig",
    "LamportClock",
    "MemberEvent",
    "MemberInfo",
    "MemberStatus",
    "Membership",
    "MembershipConfig",
    "MembershipStats",
    "PushPullMerge",
    "SnapshotRecord",
    "SnapshotState",
    "UserEvent",
    "decode_tags",
    "encode_tags",
    "parse_snapshot",
]
