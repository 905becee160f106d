"""Regressions: inputs that once broke the agent's shells and services."""

from __future__ import annotations

import asyncio
import random
from types import MappingProxyType

import pytest

from controlplane.api.heartbeat import member_api_version
from controlplane.api.ring import RingService
from controlplane.errors import InvalidArgument
from controlplane.gossip import codec
from controlplane.heartbeat import tracker as heartbeat
from controlplane.heartbeat.tracker import HeartbeatTracker
from controlplane.membership import MemberInfo, MemberStatus
from controlplane.rings.directory import Registration, RingDirectory, check_address
from controlplane.shell.election import member_rank
from controlplane.shell.udp import UdpEndpoint
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


def test_control_characters_are_not_ring_addresses() -> None:
    with pytest.raises(InvalidArgument, match="printable ASCII"):
        check_address("a\x01b", 80)
    with pytest.raises(InvalidArgument):
        check_address("héllo", 80)


def test_a_registration_no_ring_accepts_is_rolled_back() -> None:
    directory = RingDirectory("a")
    directory.register("r", "10.0.0.1", 80, 1, {})
    before = directory.registrations()
    broken = Registration("r", "bad\x01id:1", "bad\x01id", 1, 1, {}, 99, "x")
    with pytest.raises(InvalidArgument):
        directory.apply(broken, now=0.0)
    assert directory.registrations() == before
    assert [e.id for e in directory.view("r").entries] == ["10.0.0.1:80"]


def test_many_registrations_are_merged_with_one_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    source = RingDirectory("a")
    registrations = [
        source.prepare("r", f"10.1.{i // 250}.{i % 250}", 80, 1, {}) for i in range(300)
    ]
    target = RingDirectory("b")
    rebuilds: list[int] = []
    original = target._rebuild

    def counting() -> list[str]:
        rebuilds.append(1)
        return original()

    monkeypatch.setattr(target, "_rebuild", counting)
    assert len(target.apply_many(registrations, now=0.0)) == 300
    assert len(rebuilds) == 1
    assert len(target.view("r").entries) == 300


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


async def test_udp_send_to_a_malformed_host_is_dropped_not_raised() -> None:
    endpoint = UdpEndpoint(lambda source, data: None)
    endpoint.open("127.0.0.1", 0)
    try:
        for dest in (("a\x00b", 1), ("10.0.0.1", 70000)):
            endpoint.send(dest, b"x")
        assert endpoint.stats.send_dropped == 2
        await asyncio.sleep(0)
    finally:
        endpoint.close()


def test_heartbeat_table_evicts_the_least_recently_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "MAX_CLIENTS", 3)
    tracker = HeartbeatTracker(random.Random(0))
    for index, client in enumerate(("a", "b", "c")):
        tracker.record(client, "p", None, {}, now=float(index))
    tracker.record("a", "p", None, {}, now=3.0)  # a is recent again
    tracker.record("d", "p", None, {}, now=4.0)  # table full: b, least recent, goes
    assert [c.client_id for c in tracker.clients(now=5.0)] == ["a", "c", "d"]


@pytest.mark.parametrize("host", ["a\x00b", "name.example", "", "10.0.0.300"])
def test_the_core_refuses_member_addresses_that_are_not_ip_literals(host: str) -> None:
    node = make_node()
    alive = codec.encode_alive(5, "intruder", (host, 7946), b"")
    node.receive_packet(PEER, packet(alive), now=0.0)
    assert node.member("intruder") is None
    assert node.stats.dropped["invalid_message"] == 1
