"""Regression tests for divergences from memberlist found in review (state.go rules)."""

from __future__ import annotations

from controlplane.gossip import GossipConfig, MemberJoined, NodeStatus, codec
from controlplane.wire.v1 import gossip_pb2 as pb

from .helpers import ME, PEER, decode, make_node, packet, sends

OTHER = ("10.0.0.3", 7946)


def _push_pull_state(node_name: str, address: tuple[str, int], incarnation: int) -> bytes:
    state = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION, join=True)
    state.members.add(
        name=node_name,
        address=pb.Address(host=address[0], port=address[1]),
        meta=b"",
        incarnation=incarnation,
        status=pb.MEMBER_STATUS_ALIVE,
    )
    return codec.seal(codec.frame_header("", False), state.SerializeToString(), None)


def test_alive_about_itself_after_leave_is_ignored():
    # memberlist aliveNode: "if m.hasLeft() && a.Node == m.config.Name { return }". Refuting
    # would broadcast us alive again after we announced the leave.
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_alive(1, "peer", PEER, b"")), 0.0)
    node.leave(1.0)
    incarnation = node.incarnation
    node.receive_packet(PEER, packet(codec.encode_alive(incarnation + 3, "me", ME, b"x")), 2.0)
    assert node.incarnation == incarnation
    assert node.stats.refutations == 0
    assert node.member("me").status is NodeStatus.LEFT
    assert node.health_score == 0


def test_push_pull_alive_record_reclaims_a_left_name_at_a_new_address():
    # A member that left may come back at another address with its incarnation restarted;
    # an alive about it is applied whatever its incarnation (memberlist aliveNode
    # updatesNode). The push-pull fast path must not skip that record.
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_alive(3, "peer", PEER, b"")), 0.0)
    node.receive_packet(PEER, packet(codec.encode_dead(3, "peer", "peer")), 1.0)
    assert node.member("peer").status is NodeStatus.LEFT
    _response, effects = node.handle_push_pull(OTHER, _push_pull_state("peer", OTHER, 1), 2.0)
    assert [type(e) for e in effects] == [MemberJoined]
    member = node.member("peer")
    assert member.status is NodeStatus.ALIVE
    assert member.address == OTHER


def _buddy_messages(node, now):
    """Tick until the node pings PEER; return the suspects that ping carries from the node."""
    for _ in range(50):
        now = node.next_deadline()
        for effect in sends(node.tick(now)):
            messages = decode(effect).messages
            kinds = [m.WhichOneof("body") for m in messages]
            if effect.dest == PEER and "ping" in kinds:
                return [
                    m.suspect.node
                    for m in messages
                    if m.WhichOneof("body") == "suspect" and m.suspect.from_node == "me"
                ]
    raise AssertionError("no probe")


def test_buddy_system_switch():
    # The buddy suspect (from us) rides with the ping of a suspect; off, only queued gossip does.
    for buddy, expected in ((True, ["peer"]), (False, [])):
        node = make_node(config=GossipConfig.lan(buddy_system=buddy))
        node.receive_packet(PEER, packet(codec.encode_alive(1, "peer", PEER, b"")), 0.0)
        node.receive_packet(PEER, packet(codec.encode_suspect(1, "peer", "x")), 0.0)
        assert _buddy_messages(node, 0.0) == expected
