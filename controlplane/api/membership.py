"""The Membership service: the Serf layer over gRPC.

Conversions between the layer's values and the protos live here, and so do the
request limits that belong to the API rather than to the layer (filter sizes,
how many addresses a Join may name). Watch streams subscribe before they read
the current state, so nothing that happens in between can be missed; a change
seen twice is harmless because every message carries the member's full state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc.aio
import re2
from google.protobuf.duration_pb2 import Duration

from controlplane.api.hub import EventHub
from controlplane.election import LeaderView
from controlplane.errors import InvalidArgument, Unavailable
from controlplane.membership import (
    EventType,
    MemberEvent,
    MemberInfo,
    Membership,
    MemberStatus,
    UserEvent,
)
from controlplane.transport.runtime import GossipRuntime
from controlplane.v1 import membership_pb2 as pb

PATTERN_MAX = 256
JOIN_ADDRESSES_MAX = 64

STATUS_TO_PROTO = {
    MemberStatus.NONE: pb.MEMBER_STATUS_UNSPECIFIED,
    MemberStatus.ALIVE: pb.MEMBER_STATUS_ALIVE,
    MemberStatus.LEAVING: pb.MEMBER_STATUS_LEAVING,
    MemberStatus.LEFT: pb.MEMBER_STATUS_LEFT,
    MemberStatus.FAILED: pb.MEMBER_STATUS_FAILED,
}
EVENT_TO_PROTO = {
    EventType.MEMBER_JOIN: pb.EVENT_TYPE_MEMBER_JOIN,
    EventType.MEMBER_LEAVE: pb.EVENT_TYPE_MEMBER_LEAVE,
    EventType.MEMBER_FAILED: pb.EVENT_TYPE_MEMBER_FAILED,
    EventType.MEMBER_UPDATE: pb.EVENT_TYPE_MEMBER_UPDATE,
    EventType.MEMBER_REAP: pb.EVENT_TYPE_MEMBER_REAP,
    EventType.USER: pb.EVENT_TYPE_USER,
}

Event = MemberEvent | UserEvent


def member_to_proto(member: MemberInfo) -> pb.Member:
    host, port = member.address
    return pb.Member(
        name=member.name,
        address=host,
        port=port,
        tags=dict(member.tags),
        status=STATUS_TO_PROTO[member.status],
        protocol=pb.ProtocolVersions(
            protocol_min=member.protocol_min,
            protocol_max=member.protocol_max,
            protocol_current=member.protocol_current,
            delegate_min=member.delegate_min,
            delegate_max=member.delegate_max,
            delegate_current=member.delegate_current,
        ),
        incarnation=member.incarnation,
    )


def event_to_proto(event: Event) -> pb.Event:
    if isinstance(event, UserEvent):
        return pb.Event(
            type=pb.EVENT_TYPE_USER,
            user=pb.UserEvent(
                name=event.name,
                payload=event.payload,
                lamport_time=event.lamport_time,
                coalesce=event.coalesce,
            ),
        )
    return pb.Event(
        type=EVENT_TO_PROTO[event.type],
        members=[member_to_proto(member) for member in event.members],
    )


def _compile(field: str, pattern: str) -> Any:
    if len(pattern) > PATTERN_MAX:
        raise InvalidArgument.for_field(
            field, f"must be at most {PATTERN_MAX} characters, got {len(pattern)}"
        )
    try:
        return re2.compile(pattern)
    except re2.error as error:
        raise InvalidArgument.for_field(
            field, f"is not a valid RE2 regular expression: {error}"
        ) from None


def _no_unspecified(field: str, values: Iterable[int]) -> set[int]:
    chosen = set(values)
    if 0 in chosen:
        raise InvalidArgument.for_field(field, "must not contain the UNSPECIFIED value")
    return chosen


class MembershipService:
    """Every RPC of controlplane.v1.Membership except the leader ones."""

    def __init__(
        self,
        layer: Membership,
        runtime: GossipRuntime,
        events: EventHub[Event],
        *,
        default_port: int,
        leave: Callable[[], Awaitable[None]],
    ) -> None:
        self._layer = layer
        self._runtime = runtime
        self._events = events
        self._default_port = default_port
        self._leave = leave

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListMembersResponse:
        statuses = _no_unspecified("statuses", request.statuses)
        name_re = _compile("name_pattern", request.name_pattern) if request.name_pattern else None
        tag_res = {key: _compile(f"tags[{key}]", value) for key, value in request.tags.items()}
        members = []
        for member in sorted(self._layer.members(), key=lambda m: m.name):
            proto = member_to_proto(member)
            if statuses and proto.status not in statuses:
                continue
            if name_re is not None and not name_re.fullmatch(member.name):
                continue
            if any(
                key not in member.tags or not regex.fullmatch(member.tags[key])
                for key, regex in tag_res.items()
            ):
                continue
            members.append(proto)
        return pb.ListMembersResponse(members=members)

    async def GetLocalMember(
        self, request: pb.GetLocalMemberRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLocalMemberResponse:
        return pb.GetLocalMemberResponse(member=member_to_proto(self._layer.local_member()))

    async def Join(
        self, request: pb.JoinRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.JoinResponse:
        addresses = list(request.addresses)
        if not 1 <= len(addresses) <= JOIN_ADDRESSES_MAX:
            raise InvalidArgument.for_field(
                "addresses", f"must hold 1 to {JOIN_ADDRESSES_MAX} addresses, got {len(addresses)}"
            )
        for index, address in enumerate(addresses):
            if not address.strip():
                raise InvalidArgument.for_field(f"addresses[{index}]", "must not be empty")
        contacted = await self._runtime.join(
            addresses, self._default_port, replay=request.replay_events
        )
        if contacted == 0:
            raise Unavailable(f"none of {len(addresses)} addresses answered a state exchange")
        return pb.JoinResponse(contacted=contacted)

    async def Leave(
        self, request: pb.LeaveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LeaveResponse:
        await self._leave()
        return pb.LeaveResponse()

    async def UpdateTags(
        self, request: pb.UpdateTagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateTagsResponse:
        effects = self._layer.update_tags(
            dict(request.set), list(request.delete), self._runtime.now
        )
        self._runtime.apply(effects)
        return pb.UpdateTagsResponse(member=member_to_proto(self._layer.local_member()))

    async def ForceLeave(
        self, request: pb.ForceLeaveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ForceLeaveResponse:
        if not request.name:
            raise InvalidArgument.for_field("name", "must name a member (1 to 128 characters)")
        effects = self._layer.force_leave(request.name, request.prune, self._runtime.now)
        self._runtime.apply(effects)
        return pb.ForceLeaveResponse()

    async def FireUserEvent(
        self, request: pb.FireUserEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FireUserEventResponse:
        lamport_time, effects = self._layer.fire_user_event(
            request.name, request.payload, request.coalesce, self._runtime.now
        )
        self._runtime.apply(effects)
        return pb.FireUserEventResponse(lamport_time=lamport_time)

    async def WatchMembers(
        self, request: pb.WatchMembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchMembersResponse]:
        with self._events.subscribe() as subscription:
            yield pb.WatchMembersResponse(
                change=pb.MEMBER_CHANGE_SNAPSHOT,
                members=[
                    member_to_proto(m) for m in sorted(self._layer.members(), key=lambda m: m.name)
                ],
            )
            async for event in subscription:
                if not isinstance(event, MemberEvent):
                    continue
                if event.type is EventType.MEMBER_REAP:
                    change, members = pb.MEMBER_CHANGE_REMOVED, list(event.members)
                else:
                    # The member's state now, not as the (possibly coalesced) event saw it.
                    change = pb.MEMBER_CHANGE_UPSERT
                    members = [self._layer.member(m.name) or m for m in event.members]
                yield pb.WatchMembersResponse(
                    change=change, members=[member_to_proto(m) for m in members]
                )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        types = _no_unspecified("types", request.types)
        with self._events.subscribe() as subscription:
            async for event in subscription:
                proto = event_to_proto(event)
                if types and proto.type not in types:
                    continue
                if (
                    request.user_event_name
                    and isinstance(event, UserEvent)
                    and event.name != request.user_event_name
                ):
                    continue
                yield pb.WatchEventsResponse(event=proto)


def leader_to_proto(view: LeaderView, layer: Membership) -> pb.Leader:
    member = layer.member(view.name)
    address = ""
    if member is not None:
        host, port = member.address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    remaining = Duration()
    remaining.FromNanoseconds(max(0, round(view.lease_remaining * 1e9)))
    return pb.Leader(name=view.name, address=address, epoch=view.epoch, lease_remaining=remaining)


class LeaderRpcs:
    """GetLeader and WatchLeader over the agent's election."""

    def __init__(
        self,
        layer: Membership,
        leader: Callable[[], LeaderView | None],
        changes: EventHub[LeaderView | None],
    ) -> None:
        self._layer = layer
        self._leader = leader
        self._changes = changes

    def _response(self, view: LeaderView | None) -> pb.Leader | None:
        return None if view is None else leader_to_proto(view, self._layer)

    async def GetLeader(
        self, request: pb.GetLeaderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLeaderResponse:
        return pb.GetLeaderResponse(leader=self._response(self._leader()))

    async def WatchLeader(
        self, request: pb.WatchLeaderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchLeaderResponse]:
        with self._changes.subscribe() as subscription:
            last = self._leader()
            yield pb.WatchLeaderResponse(leader=self._response(last))
            async for _ in subscription:
                view = self._leader()
                if (view and (view.name, view.epoch)) != (last and (last.name, last.epoch)):
                    last = view
                    yield pb.WatchLeaderResponse(leader=self._response(view))
