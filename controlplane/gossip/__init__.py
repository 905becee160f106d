"""Sans-IO SWIM + Lifeguard gossip core (a re-build of HashiCorp memberlist).

The core is a state machine: bytes and time in, effects out. It opens no
socket, reads no clock and uses no global randomness, so the same code runs
under the asyncio shell and under :mod:`controlplane.testing`'s simulator.

Public surface::

    node = GossipNode(config, name, address, meta=b"", rng=random.Random(seed), now=t,
                      keyring=None, label="", user_state=None)
    node.join(seeds, now) -> list[Effect]            # push-pull with every seed (join=True)
    node.receive_packet(src, data, now) -> list[Effect]   # one datagram; raises only bugs (strict)
    node.tick(now) -> list[Effect]                   # run due timers
    node.next_deadline() -> float                    # when tick() next has work
    node.handle_push_pull(src, request, now) -> (response, list[Effect])  # push-pull server side
    node.push_pull_response(src, response | None, now) -> list[Effect]    # push-pull client side
    node.leave(now), node.update_meta(meta, now) -> list[Effect]
    node.broadcast_user(payload, now) -> None
    node.members() -> list[Member]; node.health_score; node.stats

Effects (``effects.py``): ``SendPacket(dest, data)``, ``StartPushPull(dest, request,
join)``, ``MemberJoined(member)``, ``MemberUpdated(member)``, ``MemberLeft(member,
left)``, ``MemberReaped(member)``, ``UserMessage(payload)``, ``NameConflict(name, claimant)``
(another address claims this member's name), ``StartStreamPing(dest, request, seq_no,
timeout)`` (memberlist's TCP fallback ping, answered with ``node.stream_ping_response``;
the peer's side is ``node.answer_stream_ping(request) -> bytes``), ``ReachedOnlyByStream(name,
address)`` (that ping answered where UDP did not), ``MergeRemoteState(data, join)`` (a
peer's push-pull state of the layer above, for that layer), ``PingComplete(node, rtt,
coordinate)`` (a direct ack carried the member's coordinate: the ``ack_coordinate``
provider of the acker put it there). Events are never emitted about the
local member itself.

The shell calls ``tick`` no later than ``next_deadline()`` and again after every
other entry point (they may queue broadcasts that move the deadline earlier).
"""

from controlplane.gossip.config import PROFILES, GossipConfig
from controlplane.gossip.effects import (
    Effect,
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
from controlplane.gossip.errors import (
    GossipError,
    MetadataTooLarge,
    PayloadTooLarge,
    PushPullRejected,
    StreamPingRefused,
)
from controlplane.gossip.keyring import Keyring
from controlplane.gossip.node import GossipNode, UserStateProvider
from controlplane.gossip.state import Address, Member, NodeStatus
from controlplane.gossip.stats import GossipStats

__all__ = [
    "PROFILES",
    "Address",
    "Effect",
    "GossipConfig",
    "GossipError",
    "GossipNode",
    "GossipStats",
    "Keyring",
    "Member",
    "MemberJoined",
    "MemberLeft",
    "MemberReaped",
    "MemberUpdated",
    "MergeRemoteState",
    "MetadataTooLarge",
    "NameConflict",
    "NodeStatus",
    "PayloadTooLarge",
    "PingComplete",
    "PushPullRejected",
    "ReachedOnlyByStream",
    "SendPacket",
    "StartPushPull",
    "StartStreamPing",
    "StreamPingRefused",
    "UserMessage",
    "UserStateProvider",
]
