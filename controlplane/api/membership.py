"""The Membership service: the Serf layer over gRPC.

Conversions between the layer's values and the protos live here, and so do the
request limits that belong to the API rather than to the layer (filter sizes,
how many addresses a Join may name). Watch streams subscribe before they read
the current state, so nothing that happens in between can be missed; a change
seen twice is harmless because every message carries the member's full state.
"""

from __future__ import annotations

import asyncio
import functools
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from operator import attrgetter, is_, itemgetter
from typing import TYPE_CHECKING, Any

import grpc.aio
from google.protobuf.duration_pb2 import Duration

from controlplane.api.hub import EventHub
from controlplane.api.paging import PageRequest, filters_digest, page_request, take_page
from controlplane.election import ElectionStatus, LeaderView
from controlplane.errors import InvalidArgument, Unavailable
from controlplane.membership import (
    EventType,
    MemberEvent,
    MemberInfo,
    Membership,
    MemberStatus,
    UserEvent,
)
from controlplane.membership.validation import compile_pattern
from controlplane.shell.runtime import GossipRuntime
from controlplane.v1 import membership_pb2 as pb

if TYPE_CHECKING:
    from controlplane.shell.election import LeaderChange

PATTERN_MAX = 256
JOIN_ADDRESSES_MAX = 64
# ListMembers filters: each tag filter costs a regular expression match per member.
TAG_FILTERS_MAX = 32
TAG_KEY_BYTES_MAX = 128
# There are four statuses; a longer list can only be repetition.
STATUS_FILTERS_MAX = 16

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


@functools.lru_cache(maxsize=16)
def _protocol_versions(*versions: int) -> pb.ProtocolVersions:
    # Every member of a cluster speaks the same few versions: build their message once
    # (it is copied into each member, never mutated).
    return pb.ProtocolVersions(
        protocol_min=versions[0],
        protocol_max=versions[1],
        protocol_current=versions[2],
        delegate_min=versions[3],
        delegate_max=versions[4],
        delegate_current=versions[5],
    )


def member_to_proto(member: MemberInfo) -> pb.Member:
    host, port = member.address
    return pb.Member(
        name=member.name,
        address=host,
        port=port,
        tags=dict(member.tags),
        status=STATUS_TO_PROTO[member.status],
        protocol=_protocol_versions(
            member.protocol_min,
            member.protocol_max,
            member.protocol_current,
            member.delegate_min,
            member.delegate_max,
            member.delegate_current,
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
    return compile_pattern(field, pattern, PATTERN_MAX)


def _no_unspecified(field: str, values: Iterable[int]) -> set[int]:
    chosen = set(values)
    if 0 in chosen:
        raise InvalidArgument.for_field(field, "must not contain the UNSPECIFIED value")
    return chosen


_NAME = attrgetter("name")
_SIZE = itemgetter(2)


def _ENTRY_NAME(entry: tuple[MemberInfo, pb.Member, int]) -> str:
    return entry[0].name


# Members handled between two yields to the loop while a list is built: about 4 ms
# when every member changed since the last list (its info and proto rebuilt).
LIST_SLICE = 400


class MemberProtos:
    """The `pb.Member` of every member, built once per change of the member.

    The layer hands out the same immutable `MemberInfo` while a member is unchanged,
    so an entry is reused for as long as the layer's object is the one it was built
    from: listing a large cluster converts only the members that changed since the
    last listing. Protos are shared between responses and never mutated."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[MemberInfo, pb.Member, int]] = {}

    def entry(self, member: MemberInfo) -> tuple[MemberInfo, pb.Member, int]:
        """The member, its proto and the proto's encoded size."""
        return self._entry(member)

    def _entry(self, member: MemberInfo) -> tuple[MemberInfo, pb.Member, int]:
        entry = self._entries.get(member.name)
        if entry is None or entry[0] is not member:
            proto = member_to_proto(member)
            entry = (member, proto, proto.ByteSize())
            self._entries[member.name] = entry
        return entry

    def proto(self, member: MemberInfo) -> pb.Member:
        return self._entry(member)[1]

    def size(self, member: MemberInfo) -> int:
        """The encoded size of the member's proto."""
        return self._entry(member)[2]

    def forget_absent(self, members: Sequence[MemberInfo]) -> None:
        """Drops the entries of members no longer listed, once enough have gone that
        the O(members) rebuild is paid for by the removals it reclaims."""
        if len(self._entries) > len(members) + max(64, len(members) // 8):
            entries = self._entries
            self._entries = {m.name: entries[m.name] for m in members if m.name in entries}

    def __len__(self) -> int:
        return len(self._entries)


class MemberFilter:
    """A validated ListMembers filter: statuses, tag patterns and a name pattern."""

    def __init__(self, request: pb.ListMembersRequest) -> None:
        if len(request.statuses) > STATUS_FILTERS_MAX:
            raise InvalidArgument.for_field(
                "statuses",
                f"must hold at most {STATUS_FILTERS_MAX} entries, got {len(request.statuses)}",
            )
        if len(request.tags) > TAG_FILTERS_MAX:
            raise InvalidArgument.for_field(
                "tags", f"must hold at most {TAG_FILTERS_MAX} entries, got {len(request.tags)}"
            )
        for key in request.tags:
            size = len(key.encode())
            if size > TAG_KEY_BYTES_MAX:
                raise InvalidArgument.for_field(
                    "tags",
                    f"keys must be at most {TAG_KEY_BYTES_MAX} bytes, got a key of {size} bytes",
                )
        self.statuses = _no_unspecified("statuses", request.statuses)
        self.name_re = (
            _compile("name_pattern", request.name_pattern) if request.name_pattern else None
        )
        self.tag_res = {key: _compile(f"tags[{key}]", value) for key, value in request.tags.items()}
        self._tag_matches: dict[str, dict[str, bool]] = {key: {} for key in self.tag_res}
        self.everything = not (self.statuses or self.name_re or self.tag_res)
        # What a page token is bound to: the same filters, however they were ordered.
        self.digest = filters_digest(
            "ListMembers",
            sorted(set(request.statuses)),
            sorted(request.tags.items()),
            request.name_pattern,
        )

    def matches(self, member: MemberInfo) -> bool:
        if self.statuses and STATUS_TO_PROTO[member.status] not in self.statuses:
            return False
        if self.name_re is not None and not self.name_re.fullmatch(member.name.encode()):
            return False
        tags = member.tags
        for key, regex in self.tag_res.items():
            value = tags.get(key)
            if value is None:
                return False
            # Members share few distinct tag values (roles, datacenters) and an RE2
            # match from Python costs microseconds: decide each value once per request.
            seen = self._tag_matches[key]
            matched = seen.get(value)
            if matched is None:
                matched = seen[value] = regex.fullmatch(value.encode()) is not None
            if not matched:
                return False
        return True


def _matching_windows(
    members: Sequence[MemberInfo], page: PageRequest, chosen: MemberFilter, first: int
) -> Iterator[Sequence[MemberInfo]]:
    """The members of `members` (in name order) after the page's last name that match,
    one window of scanned members at a time: `first` members, then LIST_SLICE each.
    A window may hold no match, so a filter that matches few members of a fleet still
    costs at most LIST_SLICE members between two yields."""
    index = 0 if page.after is None else bisect_right(members, page.after, key=_NAME)
    size = max(first, 1)
    while index < len(members):
        window = members[index : index + size]
        index += len(window)
        yield window if chosen.everything else [m for m in window if chosen.matches(m)]
        size = LIST_SLICE


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
        self._protos = MemberProtos()
        # The last answer to a request with no filter and no paging (what most callers
        # send) from a cluster of at most LIST_SLICE members, with the members it was
        # built from; responses are never mutated.
        self._whole_list: tuple[list[MemberInfo], pb.ListMembersResponse] | None = None

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListMembersResponse:
        whole = request.ByteSize() == 0
        if whole and self._whole_list is not None:
            # The layer hands out the same object for a member while it is unchanged:
            # the same objects in the same order make the same response. At most
            # LIST_SLICE members are read, as one slice of the full path would be.
            seen, response = self._whole_list
            current = self._layer.members()
            if len(seen) == len(current) and all(map(is_, seen, current)):
                return response
            self._whole_list = None
        chosen = MemberFilter(request)
        page = page_request(request.page_size, request.page_token, chosen.digest)
        # In name order, and the same object for a member while it is unchanged.
        members = self._layer.members()
        protos = self._protos
        # A fleet's list is gathered and built a slice at a time, yielding between
        # slices, so that listing 5,000 members does not hold the loop for its whole
        # cost. The page needs at most page_size + 1 candidates.
        wanted = None if page.size is None else page.size + 1
        candidates: list[tuple[MemberInfo, pb.Member, int]] = []
        first = LIST_SLICE if wanted is None else min(LIST_SLICE, wanted)
        for window in _matching_windows(members, page, chosen, first):
            room = len(window) if wanted is None else wanted - len(candidates)
            candidates.extend([protos.entry(m) for m in window[:room]])
            if wanted is not None and len(candidates) >= wanted:
                break
            # Before the next window is scanned.
            await asyncio.sleep(0)
        found, next_token = take_page(candidates, page, _SIZE, _ENTRY_NAME)
        protos.forget_absent(members)
        response = pb.ListMembersResponse(next_page_token=next_token)
        for start in range(0, len(found), LIST_SLICE):
            if start:
                await asyncio.sleep(0)
            response.members.extend([entry[1] for entry in found[start : start + LIST_SLICE]])
        if whole and not next_token and len(candidates) <= LIST_SLICE:
            # The members as read to build this response (the layer's view is lazy).
            self._whole_list = ([entry[0] for entry in candidates], response)
        return response

    async def GetLocalMember(
        self, request: pb.GetLocalMemberRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLocalMemberResponse:
        return pb.GetLocalMemberResponse(member=member_to_proto(self._layer.local_member()))

    async def GetCoordinate(
        self, request: pb.GetCoordinateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCoordinateResponse:
        name = request.node or self._layer.name
        coordinate = self._layer.coordinate_of(name, "node")
        return pb.GetCoordinateResponse(
            node=name,
            coordinate=pb.Coordinate(
                vec=coordinate.vec,
                error=coordinate.error,
                adjustment=coordinate.adjustment,
                height=coordinate.height,
            ),
        )

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
        protos = self._protos
        with self._events.subscribe() as subscription:
            members = self._layer.members()
            snapshot = pb.WatchMembersResponse(change=pb.MEMBER_CHANGE_SNAPSHOT)
            # Built a slice at a time: the first watcher of a fleet converts every member.
            for start in range(0, len(members), LIST_SLICE):
                if start:
                    await asyncio.sleep(0)
                snapshot.members.extend(
                    [protos.proto(m) for m in members[start : start + LIST_SLICE]]
                )
            yield snapshot
            protos.forget_absent(members)
            async for event in subscription:
                if not isinstance(event, MemberEvent):
                    continue
                if event.type is EventType.MEMBER_REAP:
                    yield pb.WatchMembersResponse(
                        change=pb.MEMBER_CHANGE_REMOVED,
                        members=[member_to_proto(m) for m in event.members],
                    )
                    continue
                # The member's state now, not as the (possibly coalesced) event saw it;
                # every watcher shares the proto of an unchanged member.
                current = [self._layer.member(m.name) or m for m in event.members]
                yield pb.WatchMembersResponse(
                    change=pb.MEMBER_CHANGE_UPSERT, members=[protos.proto(m) for m in current]
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


def leader_address(view: LeaderView, layer: Membership) -> str:
    """The leader's host:port as clients dial it, or "" while it is not a member."""
    member = layer.member(view.name)
    if member is None:
        return ""
    host, port = member.address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def leader_to_proto(view: LeaderView, layer: Membership) -> pb.Leader:
    address = leader_address(view, layer)
    remaining = Duration()
    remaining.FromNanoseconds(max(0, round(view.lease_remaining * 1e9)))
    return pb.Leader(name=view.name, address=address, epoch=view.epoch, lease_remaining=remaining)


def election_status_to_proto(status: ElectionStatus) -> pb.ElectionStatus:
    proto = pb.ElectionStatus(state=status.state, reason=status.reason)
    if status.expected_within is not None:
        proto.expected_within.FromNanoseconds(max(0, round(status.expected_within * 1e9)))
    return proto


class LeaderRpcs:
    """GetLeader, GetLeaderHistory and WatchLeader over the agent's election."""

    def __init__(
        self,
        layer: Membership,
        leader: Callable[[], LeaderView | None],
        changes: EventHub[LeaderView | None],
        status: Callable[[], ElectionStatus] | None = None,
        ranked: Callable[[], Sequence[tuple[str, int]]] | None = None,
        history: Callable[[], Iterable[LeaderChange]] | None = None,
    ) -> None:
        self._layer = layer
        self._leader = leader
        self._changes = changes
        self._status = status
        self._ranked = ranked
        self._history = history

    def _response(self, view: LeaderView | None) -> pb.Leader | None:
        return None if view is None else leader_to_proto(view, self._layer)

    async def GetLeader(
        self, request: pb.GetLeaderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLeaderResponse:
        view = self._leader()
        if view is not None or self._status is None:
            response = pb.GetLeaderResponse(leader=self._response(view))
        else:
            response = pb.GetLeaderResponse(election=election_status_to_proto(self._status()))
        for name, rank in self._ranked() if self._ranked is not None else ():
            member = response.ranked.add(name=name, rank=rank)
            if view is not None and view.name == name:
                member.leading = True
                member.lease_remaining.CopyFrom(response.leader.lease_remaining)
        return response

    async def GetLeaderHistory(
        self, request: pb.GetLeaderHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLeaderHistoryResponse:
        response = pb.GetLeaderHistoryResponse()
        for change in self._history() if self._history is not None else ():
            proto = response.changes.add(
                leader=change.leader or "",
                epoch=change.epoch,
                cause=change.cause,
                reason=change.reason,
            )
            proto.time.FromNanoseconds(round(change.at * 1e9))
        return response

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
