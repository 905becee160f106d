"""The core's hook for network coordinates: the acker's coordinate rides on the ack of
a direct ping, and the prober reports it with the measured round trip (memberlist's
AckPayload / NotifyPingComplete)."""

from __future__ import annotations

import random

from controlplane.gossip import GossipConfig, GossipNode, PingComplete, codec
from controlplane.wire.v1 import gossip_pb2 as pb

from .helpers import ME, PEER, decode, make_node, packet, sends

OTHER = ("10.0.0.3", 7946)
COORD = pb.Coordinate(vec=[0.001] * 8, error=1.5, adjustment=0.0, height=1e-5)


def test_ack_to_a_direct_ping_carries_the_provided_coordinate() -> None:
    node = GossipNode(
        GossipConfig.lan(), "me", ME, rng=random.Random(1), now=0.0, ack_coordinate=lambda: COORD
    )
    (ack,) = sends(node.receive_packet(PEER, packet(codec.encode_ping(7, "me", "peer")), 0.0))
    message = decode(ack).messages[0]
    assert message.ack.seq_no == 7
    assert message.ack.coordinate == COORD


def test_without_a_provider_the_ack_has_no_coordinate() -> None:
    node = make_node()
    (ack,) = sends(node.receive_packet(PEER, packet(codec.encode_ping(7, "me", "peer")), 0.0))
    assert not decode(ack).messages[0].ack.HasField("coordinate")


def _ping_of(node: GossipNode, target: str) -> tuple[float, int]:
    for _ in range(50):
        now = node.next_deadline()
        for effect in sends(node.tick(now)):
            first = decode(effect).messages[0]
            if first.WhichOneof("body") == "ping" and first.ping.target == target:
                return now, first.ping.seq_no
    raise AssertionError("no probe")


def test_direct_ack_reports_the_round_trip_and_the_coordinate() -> None:
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_alive(1, "peer", PEER, b"")), 0.0)
    sent, seq_no = _ping_of(node, "peer")
    effects = node.receive_packet(PEER, packet(codec.encode_ack(seq_no, COORD)), sent + 0.004)
    (done,) = [e for e in effects if isinstance(e, PingComplete)]
    assert done.node == "peer"
    assert abs(done.rtt - 0.004) < 1e-9
    assert done.coordinate == COORD
    # An ack without a coordinate (an older agent) reports nothing.
    sent, seq_no = _ping_of(node, "peer")
    effects = node.receive_packet(PEER, packet(codec.encode_ack(seq_no)), sent + 0.004)
    assert not [e for e in effects if isinstance(e, PingComplete)]


def test_acks_from_elsewhere_or_relayed_report_nothing() -> None:
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_alive(1, "peer", PEER, b"")), 0.0)
    sent, seq_no = _ping_of(node, "peer")
    # The same sequence number from another address (a relay, or a forger): no sample.
    effects = node.receive_packet(OTHER, packet(codec.encode_ack(seq_no, COORD)), sent + 0.5)
    assert not [e for e in effects if isinstance(e, PingComplete)]
    # A relay forwarding an indirect probe's ack drops the target's coordinate.
    request = codec.encode_indirect_ping(42, "target", OTHER, True, "asker")
    (ping,) = sends(node.receive_packet(PEER, packet(request), 1.0))
    local_seq = decode(ping).messages[0].ping.seq_no
    effects = node.receive_packet(OTHER, packet(codec.encode_ack(local_seq, COORD)), 1.1)
    assert not [e for e in effects if isinstance(e, PingComplete)]
    (relayed,) = sends(effects)
    assert not decode(relayed).messages[0].ack.HasField("coordinate")
