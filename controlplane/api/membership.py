"""The Membership service's RPCs that read the gossip member list.

Statuses follow Serf: a suspect member is still alive until it is declared dead,
a dead one is failed, a member that left gracefully is left.
"""

from __future__ import annotations

import re
from typing import Any

import grpc.aio

from controlplane.errors import InvalidArgument
from controlplane.gossip import GossipNode, Member, NodeStatus
from controlplane.v1 import membership_pb2

NAME_PATTERN_MAX = 256

STATUS_TO_PROTO = {
    NodeStatus.ALIVE: membership_pb2.MEMBER_STATUS_ALIVE,
    NodeStatus.SUSPECT: membership_pb2.MEMBER_STATUS_ALIVE,
    NodeStatus.DEAD: membership_pb2.MEMBER_STATUS_FAILED,
    NodeStatus.LEFT: membership_pb2.MEMBER_STATUS_LEFT,
}

# Gossip protocol versions this agent speaks (see docs/gossip.md).
PROTOCOL = membership_pb2.ProtocolVersions(
    protocol_min=1,
    protocol_max=1,
    protocol_current=1,
    delegate_min=1,
    delegate_max=1,
    delegate_current=1,
)


def member_to_proto(member: Member) -> membership_pb2.Member:
    host, port = member.address
    return membership_pb2.Member(
        name=member.name,
        address=host,
        port=port,
        status=STATUS_TO_PROTO[member.status],
        protocol=PROTOCOL,
        incarnation=member.incarnation,
    )


def _compile(field: str, pattern: str) -> re.Pattern[str]:
    if len(pattern) > NAME_PATTERN_MAX:
        raise InvalidArgument.for_field(
            field, f"must be at most {NAME_PATTERN_MAX} characters, got {len(pattern)}"
        )
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InvalidArgument.for_field(
            field, f"is not a valid regular expression: {error}"
        ) from None


class MembershipReads:
    """ListMembers and GetLocalMember over a live gossip member."""

    def __init__(self, node: GossipNode) -> None:
        self._node = node

    async def ListMembers(
        self,
        request: membership_pb2.ListMembersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> membership_pb2.ListMembersResponse:
        statuses = set(request.statuses)
        if membership_pb2.MEMBER_STATUS_UNSPECIFIED in statuses:
            raise InvalidArgument.for_field(
                "statuses", "must not contain MEMBER_STATUS_UNSPECIFIED"
            )
        name_re = _compile("name_pattern", request.name_pattern) if request.name_pattern else None
        tag_res = {key: _compile(f"tags[{key}]", value) for key, value in request.tags.items()}
        members = []
        for member in sorted(self._node.members(), key=lambda m: m.name):
            proto = member_to_proto(member)
            if statuses and proto.status not in statuses:
                continue
            if name_re is not None and not name_re.fullmatch(member.name):
                continue
            if any(
                key not in proto.tags or not regex.fullmatch(proto.tags[key])
                for key, regex in tag_res.items()
            ):
                continue
            members.append(proto)
        return membership_pb2.ListMembersResponse(members=members)

    async def GetLocalMember(
        self,
        request: membership_pb2.GetLocalMemberRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> membership_pb2.GetLocalMemberResponse:
        node = self._node
        member = node.member(node.name)
        assert member is not None, "the local member is always in its own map"
        return membership_pb2.GetLocalMemberResponse(member=member_to_proto(member))
