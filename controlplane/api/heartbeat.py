"""Heartbeat and ListClients: the agent pushes server lists to its clients.

A heartbeat answers, as Nomad's do, with the live servers, the cluster size, the
leader and when to heartbeat next. Servers are the alive members tagged
`role=server` that are not draining and speak an API version the client can use.
Each client gets the list in its own shuffled order (stable while the set is
unchanged), so that clients spread over the servers instead of all picking the
first one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import grpc.aio

from controlplane.api.server_pool import seconds_to_duration
from controlplane.errors import InvalidArgument
from controlplane.heartbeat import HeartbeatTracker
from controlplane.membership import MemberInfo, Membership, MemberStatus
from controlplane.pool import ApiVersion, is_api_compatible
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


def live_servers(members: list[MemberInfo], client: ApiVersion | None) -> list[MemberInfo]:
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


class HeartbeatRpcs:
    """Heartbeat and ListClients of controlplane.v1.ServerPool."""

    def __init__(
        self,
        layer: Membership,
        tracker: HeartbeatTracker,
        clock: Callable[[], float],
        leader: LeaderLookup,
    ) -> None:
        self._layer = layer
        self._tracker = tracker
        self._clock = clock
        self._leader = leader

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        _check_request(request)
        version = (
            ApiVersion(request.api_version.major, request.api_version.minor)
            if request.HasField("api_version")
            else None
        )
        interval = self._tracker.record(
            request.client_id,
            context.peer(),
            (version.major, version.minor) if version else None,
            dict(request.metadata),
            self._clock(),
        )
        members = self._layer.members()
        servers = live_servers(members, version)
        random.Random(request.client_id).shuffle(servers)
        leader = self._leader()
        return pb.HeartbeatResponse(
            servers=[server_proto(m) for m in servers],
            num_nodes=sum(1 for m in members if m.status is MemberStatus.ALIVE),
            leader_address=leader[0] if leader else "",
            leader_epoch=leader[1] if leader else 0,
            heartbeat_interval=seconds_to_duration(interval),
        )

    async def ListClients(
        self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListClientsResponse:
        now = self._clock()
        clients = []
        for client in self._tracker.clients(now):
            proto = pb.HeartbeatClient(
                client_id=client.client_id,
                peer=client.peer,
                metadata=dict(client.metadata),
                since_last_heartbeat=seconds_to_duration(now - client.last_seen),
            )
            if client.api_version is not None:
                proto.api_version.major, proto.api_version.minor = client.api_version
            clients.append(proto)
        return pb.ListClientsResponse(clients=clients)
