"""A second member with a taken name: memberlist's conflict path and Serf's newcomer rule."""

from __future__ import annotations

import random

from controlplane.gossip import GossipConfig, GossipNode, NameConflict, codec
from controlplane.membership import Membership, MembershipConfig
from tests.unit.gossip.helpers import ME, PEER, make_node, packet

OTHER = ("10.0.0.3", 7946)


def test_an_alive_message_for_our_name_from_another_address_is_a_conflict() -> None:
    node = make_node("me")
    effects = node.receive_packet(PEER, packet(codec.encode_alive(5, "me", OTHER, b"")), 1.0)
    assert [e for e in effects if isinstance(e, NameConflict)] == [NameConflict("me", OTHER)]
    # The claim is refused: we keep our address and do not refute with a new incarnation.
    assert node.member("me").address == ME
    assert node.incarnation == 1
    assert node.stats.dropped["address_conflict"] == 1


def test_another_members_conflict_is_only_counted() -> None:
    node = make_node("me")
    node.receive_packet(PEER, packet(codec.encode_alive(1, "peer", PEER, b"")), 1.0)
    effects = node.receive_packet(PEER, packet(codec.encode_alive(2, "peer", OTHER, b"")), 2.0)
    assert not [e for e in effects if isinstance(e, NameConflict)]
    assert node.stats.dropped["address_conflict"] == 1


def test_our_own_address_is_no_conflict() -> None:
    node = make_node("me")
    effects = node.receive_packet(PEER, packet(codec.encode_alive(3, "me", ME, b"")), 1.0)
    assert not [e for e in effects if isinstance(e, NameConflict)]


def layer(name: str, address: tuple[str, int]) -> Membership:
    return Membership(
        GossipConfig.lan(), MembershipConfig(), name, address, rng=random.Random(1), now=0.0
    )


def test_the_member_that_joins_is_the_newcomer() -> None:
    incumbent = layer("web-1", ME)
    newcomer = layer("web-1", PEER)
    (start,) = [e for e in newcomer.join([ME], 1.0) if hasattr(e, "request")]
    reply, served = incumbent.handle_push_pull(PEER, start.request, 1.0)
    # The incumbent learns of a claimant, but not as a newcomer: it stays.
    assert [e for e in served if isinstance(e, NameConflict)] == [
        NameConflict("web-1", PEER, joining=False)
    ]
    answered = newcomer.push_pull_response(ME, reply, 1.0)
    assert [e for e in answered if isinstance(e, NameConflict)] == [
        NameConflict("web-1", ME, joining=True)
    ]
    # Neither took the other's address.
    assert incumbent.local_member().address == ME
    assert [m.address for m in incumbent.members()] == [ME]


def test_a_node_core_alone_reports_no_joining() -> None:
    a = GossipNode(GossipConfig.lan(), "x", ME, rng=random.Random(1), now=0.0)
    b = GossipNode(GossipConfig.lan(), "x", PEER, rng=random.Random(2), now=0.0)
    (start,) = b.join([ME], 0.0)
    reply, _ = a.handle_push_pull(PEER, start.request, 0.0)
    conflicts = [e for e in b.push_pull_response(ME, reply, 0.0) if isinstance(e, NameConflict)]
    assert conflicts == [NameConflict("x", ME)]
