"""Heartbeat and ListClients: the agent pushes server lists to its clients.

A heartbeat answers, as Nomad's do, with the live servers, the cluster size, the
leader and when to heartbeat next. Servers are the alive members tagged
`role=server` that are not draining and speak an API version the client can use.
Each client gets the list in its own shuffled order (stable while the set is
unchanged), so that clients spread over the servers instead of all picking the
first one.

A heartbeat costs O(servers), not O(members): the server list is kept from
member events (`ServerList`) and the cluster size is the layer's O(1) count, so
thousands of clients heartbeating to an agent of a fleet of thousands of members
never walk the member list.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from operator import attrgetter
from typing import Any, Protocol

import grpc.aio

from controlplane.api.paging import filters_digest, page_request, take_page
from controlplane.api.server_pool import (
    DistanceSource,
    check_near,
    near_distances,
    seconds_to_duration,
)
from controlplane.errors import InvalidArgument
from controlplane.heartbeat.tracker import HeartbeatClient, HeartbeatTracker
from controlplane.membership import MemberEvent, MemberInfo, MemberStatus
from controlplane.pool import ApiVersion, is_api_compatible, nearest_first
from controlplane.v1 import server_pool_pb2 as pb

ROLE_TAG = "role"
SERVER_ROLE = "server"
DRAINING_TAG = "draining"
API_VERSION_TAG = "api_version"
DATACENTER_TAG = "dc"
CLIENT_ID_MAX = 128
METADATA_ENTRIES_MAX = 16
METADATA_BYTES_MAX = 256

LeaderLookup = Callable[[], tuple[str, int] | None]


def member_api_version(member: MemberInfo) -> ApiVersion | None:
    major, _, minor = member.tags.get(API_VERSION_TAG, "").partition(".")
    if not (major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return None
    return ApiVersion(int(major), int(minor))


def is_draining(member: MemberInfo) -> bool:
    return member.tags.get(DRAINING_TAG, "") == "true"


def member_address(member: MemberInfo) -> str:
    host, port = member.address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_proto(member: MemberInfo) -> pb.Server:
    proto = pb.Server(
        name=member.name,
        address=member_address(member),
        draining=is_draining(member),
        datacenter=member.tags.get(DATACENTER_TAG, ""),
    )
    version = member_api_version(member)
    if version is not None:
        proto.api_version.major, proto.api_version.minor = version.major, version.minor
    return proto


def live_servers(members: Sequence[MemberInfo], client: ApiVersion | None) -> list[MemberInfo]:
    """Alive, non-draining members with the server role that the client can use."""
    return [
        m
        for m in sorted(members, key=lambda m: m.name)
        if m.status is MemberStatus.ALIVE
        and m.tags.get(ROLE_TAG) == SERVER_ROLE
        and not is_draining(m)
        and (client is None or is_api_compatible(client, member_api_version(m)))
    ]


def _check_request(request: pb.HeartbeatRequest) -> None:
    if not 1 <= len(request.client_id) <= CLIENT_ID_MAX:
        raise InvalidArgument.for_field(
            "client_id", f"must be 1 to {CLIENT_ID_MAX} characters, got {len(request.client_id)}"
        )
    if len(request.metadata) > METADATA_ENTRIES_MAX:
        raise InvalidArgument.for_field(
            "metadata", f"must have at most {METADATA_ENTRIES_MAX} entries"
        )
    for key, value in request.metadata.items():
        if len(key.encode()) + len(value.encode()) > METADATA_BYTES_MAX:
            raise InvalidArgument.for_field(
                f"metadata[{key}]", f"must be at most {METADATA_BYTES_MAX} bytes"
            )
    if request.near:
        # Before the client is recorded: a refused heartbeat leaves no trace.
        check_near(request.near)


class MemberSource(Protocol):
    """What the heartbeat needs of the membership layer (`Membership` provides it)."""

    def members(self) -> Sequence[MemberInfo]: ...

    def member(self, name: str) -> MemberInfo | None: ...

    def local_member(self) -> MemberInfo: ...

    def alive_count(self) -> int: ...

    def status_version(self) -> int: ...


def _is_server(member: MemberInfo) -> bool:
    return member.tags.get(ROLE_TAG) == SERVER_ROLE and not is_draining(member)


def _is_watched(member: MemberInfo) -> bool:
    """A member that is a live server or may become one without an event.

    The layer moves a member between alive and leaving on gossiped intents without
    emitting an event (as Serf does); those are re-read on every use. Every other
    change that matters here (a join, a failure, a leave, new tags) comes with an
    event."""
    return _is_server(member) and member.status in (MemberStatus.ALIVE, MemberStatus.LEAVING)


# Distinct client API versions whose filtered lists are kept; clients choose them.
_VERSIONS_KEPT = 64


class ServerList:
    """The live servers in name order, as `live_servers(layer.members(), version)` would
    compute them, kept up to date from member events at the cost of what changed.

    Each member of an event is re-read from the layer (its state now, not the
    event's), so events may be coalesced, repeated or reordered. The sorted list is
    rebuilt only when a live server's name, address, API version or datacenter
    changes, and each client API version's filtered list lazily from it."""

    def __init__(self, layer: MemberSource) -> None:
        self._layer = layer
        # name -> the member as last read, for members `_is_watched` keeps.
        self._watched: dict[str, MemberInfo] = {}
        # name -> (the server as heartbeats show it, its API version).
        self._live: dict[str, tuple[pb.Server, ApiVersion | None]] = {}
        self._local: MemberInfo | None = None
        self._sorted: list[tuple[pb.Server, ApiVersion | None]] | None = None
        self._by_version: dict[ApiVersion | None, list[pb.Server]] = {}
        self._checked_version = layer.status_version()
        for member in layer.members():
            self._update(member.name, member)
        self._local = layer.local_member()

    def on_member_event(self, event: MemberEvent) -> None:
        """Applies the members of one event: O(members in the event)."""
        member = self._layer.member
        for changed in event.members:
            # A reaped member is gone from the layer, unless it came back since.
            self._update(changed.name, member(changed.name))

    def servers(self, client: ApiVersion | None) -> list[pb.Server]:
        """The live servers a client of API version `client` may use, in name order.
        The list is shared: callers copy it before changing it."""
        self._recheck()
        servers = self._by_version.get(client)
        if servers is None:
            if self._sorted is None:
                self._sorted = [self._live[name] for name in sorted(self._live)]
            servers = [
                proto
                for proto, version in self._sorted
                if client is None or is_api_compatible(client, version)
            ]
            if len(self._by_version) >= _VERSIONS_KEPT:
                self._by_version.clear()
            self._by_version[client] = servers
        return servers

    def _recheck(self) -> None:
        """Re-reads the members whose status may change without an event: O(1) while
        no member's status changed (the layer's status version), O(servers) after."""
        layer = self._layer
        version = layer.status_version()
        if version == self._checked_version:
            return
        self._checked_version = version
        stale = [name for name, seen in self._watched.items() if layer.member(name) is not seen]
        for name in stale:
            self._update(name, layer.member(name))
        # The local member turns left and back to alive without events of its own.
        local = layer.local_member()
        if local is not self._local:
            self._local = local
            self._update(local.name, local)

    def _update(self, name: str, member: MemberInfo | None) -> None:
        if member is not None and _is_watched(member):
            if self._watched.get(name) is member:
                return
            self._watched[name] = member
        else:
            self._watched.pop(name, None)
        if member is not None and member.status is MemberStatus.ALIVE and _is_server(member):
            entry = (server_proto(member), member_api_version(member))
            if self._live.get(name) == entry:
                return
            self._live[name] = entry
        elif self._live.pop(name, None) is None:
            return
        self._sorted = None
        self._by_version.clear()


_CLIENT_ID = attrgetter("client_id")
# Clients whose shuffled server order is kept; past this, the orders are dropped and
# rebuilt as clients come back (a shuffle of a few servers is cheap, just not free).
_ORDERS_KEPT = 4096


def _client_proto(client: HeartbeatClient, now: float) -> pb.HeartbeatClient:
    proto = pb.HeartbeatClient(
        client_id=client.client_id,
        peer=client.peer,
        metadata=dict(client.metadata),
        since_last_heartbeat=seconds_to_duration(now - client.last_seen),
    )
    if client.api_version is not None:
        proto.api_version.major, proto.api_version.minor = client.api_version
    return proto


class HeartbeatRpcs:
    """Heartbeat and ListClients of controlplane.v1.ServerPool."""

    def __init__(
        self,
        layer: MemberSource,
        tracker: HeartbeatTracker,
        clock: Callable[[], float],
        leader: LeaderLookup,
        distances: DistanceSource | None = None,
    ) -> None:
        self._layer = layer
        self._distances = distances
        self._tracker = tracker
        self._clock = clock
        self._leader = leader
        self._servers = ServerList(layer)
        # client id -> (the list it was ordered from, that list in the client's order
        # as the serialized `servers` field of a response).
        self._orders: dict[str, tuple[list[pb.Server], bytes]] = {}
        self._api_versions: dict[tuple[int, int], ApiVersion] = {}

    @property
    def client_count(self) -> int:
        """Clients known to this agent (some may have expired within the last second)."""
        return len(self._tracker)

    def on_member_event(self, event: MemberEvent) -> None:
        """Keeps the server list current; the agent calls it with every member event."""
        self._servers.on_member_event(event)

    def _api_version(self, wire: tuple[int, int] | None) -> ApiVersion | None:
        """The client's API version, built once per distinct version."""
        if wire is None:
            return None
        version = self._api_versions.get(wire)
        if version is None:
            if len(self._api_versions) >= _VERSIONS_KEPT:
                self._api_versions.clear()
            version = self._api_versions[wire] = ApiVersion(*wire)
        return version

    def _ordered(self, client_id: str, servers: list[pb.Server]) -> bytes:
        """`servers` in the client's own order, as a response's serialized `servers`
        field: shuffled by a generator seeded with the client's id, so stable while
        the list is unchanged. Kept per client until the list (which `ServerList`
        hands out as the same object while unchanged) changes; parsing the kept
        bytes costs a fraction of copying the servers into a new response."""
        kept = self._orders.get(client_id)
        if kept is not None and kept[0] is servers:
            return kept[1]
        ordered = list(servers)
        random.Random(client_id).shuffle(ordered)
        if len(self._orders) >= _ORDERS_KEPT:
            self._orders.clear()
        field = pb.HeartbeatResponse(servers=ordered).SerializeToString()
        self._orders[client_id] = (servers, field)
        return field

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        """The answer to one heartbeat. Synchronous: nothing in it waits, and the
        servicer's coroutine calls it directly, one await fewer per call."""
        _check_request(request)
        wire_version = (
            (request.api_version.major, request.api_version.minor)
            if request.HasField("api_version")
            else None
        )
        version = self._api_version(wire_version)
        interval = self._tracker.record(
            request.client_id, context.peer(), wire_version, request.metadata, self._clock()
        )
        response = pb.HeartbeatResponse.FromString(
            self._ordered(request.client_id, self._servers.servers(version))
        )
        if request.near:
            # Nearest first; the stable sort keeps the client's shuffle among servers
            # at equal distance (and among those of unknown distance, last).
            servers = list(response.servers)
            distances = near_distances(self._distances, request.near, [s.name for s in servers])
            if distances:
                del response.servers[:]
                response.servers.extend(nearest_first(servers, distances))
        response.num_nodes = self._layer.alive_count()
        leader = self._leader()
        if leader is not None:
            response.leader_address, response.leader_epoch = leader
        response.heartbeat_interval.FromNanoseconds(round(interval * 1e9))
        return response

    async def ListClients(
        self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListClientsResponse:
        page = page_request(request.page_size, request.page_token, filters_digest("ListClients"))
        now = self._clock()
        tracker = self._tracker
        ids = tracker.client_ids(now)
        start = 0 if page.after is None else bisect_right(ids, page.after)

        def live() -> Iterator[pb.HeartbeatClient]:
            for client_id in islice(ids, start, None):
                client = tracker.get(client_id, now)
                if client is not None:
                    yield _client_proto(client, now)

        clients, next_token = take_page(live(), page, pb.HeartbeatClient.ByteSize, _CLIENT_ID)
        return pb.ListClientsResponse(clients=clients, next_page_token=next_token)
