"""Request builders shared by `Client` and `AsyncClient`, so both speak the same API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.v1 import membership_pb2, ring_pb2, server_pool_pb2

__all__ = [
    "add_node",
    "heartbeat",
    "list_members",
    "update_tags",
    "watch_events",
]


def list_members(
    statuses: Iterable[membership_pb2.MemberStatus.ValueType],
    tags: Mapping[str, str] | None,
    name_pattern: str,
) -> membership_pb2.ListMembersRequest:
    return membership_pb2.ListMembersRequest(
        statuses=list(statuses), tags=dict(tags or {}), name_pattern=name_pattern
    )


def update_tags(
    set: Mapping[str, str] | None, delete: Iterable[str]
) -> membership_pb2.UpdateTagsRequest:
    return membership_pb2.UpdateTagsRequest(set=dict(set or {}), delete=list(delete))


def watch_events(
    types: Iterable[membership_pb2.EventType.ValueType], user_event_name: str
) -> membership_pb2.WatchEventsRequest:
    return membership_pb2.WatchEventsRequest(types=list(types), user_event_name=user_event_name)


def add_node(
    address: str, port: int, ring: str, weight: int, metadata: Mapping[str, str] | None
) -> ring_pb2.AddNodeRequest:
    return ring_pb2.AddNodeRequest(
        ring=ring, address=address, port=port, weight=weight, metadata=dict(metadata or {})
    )


def heartbeat(
    client_id: str, major: int, minor: int, metadata: Mapping[str, str]
) -> server_pool_pb2.HeartbeatRequest:
    return server_pool_pb2.HeartbeatRequest(
        client_id=client_id,
        api_version=server_pool_pb2.ApiVersion(major=major, minor=minor),
        metadata=dict(metadata),
    )
