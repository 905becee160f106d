"""Regressions: inputs that once broke the agent's shells and services."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from controlplane.api.heartbeat import member_api_version
from controlplane.api.ring import RingService
from controlplane.errors import InvalidArgument
from controlplane.gossip import codec
from controlplane.membership import MemberInfo, MemberStatus
from controlplane.rings.directory import RingDirectory
from controlplane.shell.election import member_rank
from controlplane.v1 import ring_pb2
from tests.unit.gossip.helpers import PEER, make_node, packet


def member(**tags: str) -> MemberInfo:
    return MemberInfo(
        "m",
        ("10.0.0.1", 7946),
        MappingProxyType({"role": "server", **tags}),
        MemberStatus.ALIVE,
        1,
    )


def test_digits_of_other_scripts_are_not_ranks_or_versions() -> None:
    assert member_rank(member(rank="²")) is None
    assert member_rank(member(rank="٣")) is None
    assert member_rank(member(rank="3")) == 3
    assert member_api_version(member(api_version="².0")) is None
    assert member_api_version(member(api_version="1.0")) is not None


class _NoMembers:
    name = "a"

    def members(self) -> list[MemberInfo]:
        return []


async def test_add_node_too_large_to_gossip_keeps_nothing() -> None:
    def refuse(channel: str, payload: bytes) -> None:
        raise InvalidArgument.for_field("payload", "too large for one datagram")

    service = RingService(RingDirectory("a"), _NoMembers(), refuse, lambda: 0.0)  # type: ignore[arg-type]
    request = ring_pb2.AddNodeRequest(ring="r", address="10.0.0.1", port=80)
    with pytest.raises(InvalidArgument, match="payload"):
        await service.AddNode(request, None)  # type: ignore[arg-type]
    listed = await service.ListNodes(ring_pb2.ListNodesRequest(ring="r"), None)  # type: ignore[arg-type]
    assert list(listed.nodes) == []


@pytest.mark.parametrize("host", ["a\x00b", "name.example", "", "10.0.0.300"])
def test_the_core_refuses_member_addresses_that_are_not_ip_literals(host: str) -> None:
    node = make_node()
    alive = codec.encode_alive(5, "intruder", (host, 7946), b"")
    node.receive_packet(PEER, packet(alive), now=0.0)
    assert node.member("intruder") is None
    assert node.stats.dropped["invalid_message"] == 1
