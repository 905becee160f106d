"""Effects: everything the core asks its shell to do, returned instead of performed.

The shell (asyncio transport in production, the simulator in tests) executes
``SendPacket`` and ``StartPushPull`` and forwards the member events upward; the
membership layer consumes ``MergeRemoteState``.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.gossip.state import Address, Member
from controlplane.wire.v1 import gossip_pb2 as pb


@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send ``data`` as one UDP datagram to ``dest``."""

    dest: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class StartPushPull:
    """Call ``Gossip.PushPull`` on ``dest`` with ``PushPullRequest(frame=request)``.

    Report the outcome with :meth:`GossipNode.push_pull_response`: the response
    frame, or None when the call failed or took longer than ``push_pull_timeout``.
    """

    dest: Address
    request: bytes
    join: bool


@dataclass(frozen=True, slots=True)
class StartStreamPing:
    """Call ``Gossip.Ping`` on ``dest`` with ``PingRequest(frame=request)`` (memberlist's
    TCP fallback ping), giving up after ``timeout`` seconds.

    Report the outcome with :meth:`GossipNode.stream_ping_response`: ``seq_no`` and the
    response frame, or None when the call failed or timed out.
    """

    dest: Address
    request: bytes
    seq_no: int
    timeout: float


@dataclass(frozen=True, slots=True)
class ReachedOnlyByStream:
    """A member answered a probe over the gRPC port after its UDP probe went unanswered:
    it is alive, but UDP between the two is lost or filtered (memberlist logs "Was able to
    connect to X over TCP but UDP probes failed, network may be misconfigured")."""

    name: str
    address: Address


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member became alive: new, or back after being dead or left."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """An alive member published new metadata."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member is gone: ``left`` is True for a graceful leave, False for a failure."""

    member: Member
    left: bool


@dataclass(frozen=True, slots=True)
class MemberReaped:
    """A dead or left member was removed from the node map after ``dead_node_reap_time``."""

    member: Member


@dataclass(frozen=True, slots=True)
class NameConflict:
    """An alive member claims this member's own name from another address
    (memberlist's conflict delegate for the local node). The claim was refused.

    ``joining`` is False from the core; the membership layer sets it when the claim
    came in the answer to this member's own join, which makes this member the newcomer.
    """

    name: str
    claimant: Address
    joining: bool = False


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A user broadcast (``GossipNode.broadcast_user``) from some member arrived."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class MergeRemoteState:
    """A peer's push-pull carried state of the layer above gossip (memberlist's
    ``MergeRemoteState``): emitted once all of the exchange's member records are
    merged, after their member effects. ``join`` is the peer's join flag. Only a
    non-empty state is reported; a shell without a layer above ignores it."""

    data: bytes
    join: bool


@dataclass(frozen=True, slots=True)
class PingComplete:
    """A direct probe of ``node`` was acked after ``rtt`` seconds, and the ack carried
    the member's network coordinate (memberlist's ``NotifyPingComplete``). Unchecked:
    the layer that uses the coordinate validates it. Only reported when the ack had one,
    so a shell without coordinates never sees it."""

    node: str
    rtt: float
    coordinate: pb.Coordinate


MemberEvent = MemberJoined | MemberUpdated | MemberLeft | MemberReaped
Effect = (
    SendPacket
    | StartPushPull
    | StartStreamPing
    | ReachedOnlyByStream
    | MemberJoined
    | MemberUpdated
    | MemberLeft
    | MemberReaped
    | UserMessage
    | NameConflict
    | MergeRemoteState
    | PingComplete
)
