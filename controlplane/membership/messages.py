"""Encoding of the layer's broadcasts and push-pull state (``membership.proto``).

Broadcasts are ``MembershipMessage`` bytes handed to ``GossipNode.broadcast_user``;
re-broadcasts reuse the received bytes unchanged. The push-pull state lists
members and tombstones sorted by name so equal state gives equal bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.gossip import codec
from controlplane.membership.buffers import BufferedEvent
from controlplane.wire.v1 import membership_pb2 as pb


def encode_join_intent(node: str, lamport_time: int) -> bytes:
    message = pb.MembershipMessage(join_intent=pb.JoinIntent(lamport_time=lamport_time, node=node))
    return message.SerializeToString()


def encode_leave_intent(node: str, lamport_time: int, prune: bool) -> bytes:
    message = pb.MembershipMessage(
        leave_intent=pb.LeaveIntent(lamport_time=lamport_time, node=node, prune=prune)
    )
    return message.SerializeToString()


def _user_event(event: BufferedEvent) -> pb.UserEventMessage:
    return pb.UserEventMessage(
        lamport_time=event.lamport_time,
        name=event.name,
        payload=event.payload,
        coalesce=event.coalesce,
    )


def encode_user_event(event: BufferedEvent) -> bytes:
    return pb.MembershipMessage(user_event=_user_event(event)).SerializeToString()


def encode_channel_message(channel: str, origin: str, message_id: int, payload: bytes) -> bytes:
    body = pb.ChannelMessage(channel=channel, origin=origin, id=message_id, payload=payload)
    return pb.MembershipMessage(channel_message=body).SerializeToString()


def decode_message(data: bytes) -> pb.MembershipMessage | None:
    """A broadcast, or None when it is not a valid ``MembershipMessage`` (never raises)."""
    return codec.parse(pb.MembershipMessage, data)


def encode_state(
    lamport_time: int,
    status_times: Mapping[str, int],
    left_members: Iterable[str],
    event_time: int,
    events: Iterable[BufferedEvent],
    channel_states: Mapping[str, bytes] | None = None,
) -> bytes:
    state = pb.MembershipState(lamport_time=lamport_time, event_lamport_time=event_time)
    for name in sorted(status_times):
        state.status_times.add(node=name, lamport_time=status_times[name])
    state.left_members.extend(sorted(left_members))
    state.recent_events.extend(_user_event(event) for event in events)
    for channel in sorted(channel_states or {}):
        state.channel_states.add(channel=channel, state=(channel_states or {})[channel])
    return state.SerializeToString()


def status_time_field(node: str, lamport_time: int) -> bytes:
    """One ``MembershipState.status_times`` entry as encoded inside the state, so a
    state can be assembled from cached entries by concatenation."""
    entry = pb.MemberStatusTime(node=node, lamport_time=lamport_time).SerializeToString()
    return codec.length_delimited_field(pb.MembershipState.STATUS_TIMES_FIELD_NUMBER, entry)


def decode_state(data: bytes) -> pb.MembershipState | None:
    """A peer's push-pull state, or None when it is not a valid ``MembershipState``."""
    return codec.parse(pb.MembershipState, data)


def buffered(message: pb.UserEventMessage) -> BufferedEvent:
    return BufferedEvent(message.lamport_time, message.name, message.payload, message.coalesce)
