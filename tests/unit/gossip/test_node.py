"""State rules and probe mechanics of one GossipNode, driven by hand-made packets."""

from __future__ import annotations

import random

import pytest

from controlplane.gossip import (
    GossipConfig,
    GossipNode,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    MetadataTooLarge,
    NodeStatus,
    PushPullRejected,
    StartPushPull,
    codec,
)
from controlplane.wire.v1 import gossip_pb2 as pb

from .helpers import ME, PEER, decode, make_node, packet, sends

OTHER = ("10.0.0.3", 7946)


def alive(node, name="peer", incarnation=1, address=PEER, meta=b"", now=0.0):
    return node.receive_packet(
        PEER, packet(codec.encode_alive(incarnation, name, address, meta)), now
    )


def test_metadata_limit():
    config = GossipConfig.lan()
    with pytest.raises(MetadataTooLarge, match="512"):
        make_node().update_meta(b"x" * 513, 0.0)
    node = make_node()
    node.update_meta(b"x" * 512, 0.0)
    with pytest.raises(MetadataTooLarge):
        GossipNode(config, "a", ME, meta=b"x" * 600, rng=random.Random(1), now=0.0)


def test_new_member_joins_and_updates():
    node = make_node()
    effects = alive(node)
    assert [type(e) for e in effects] == [MemberJoined]
    assert alive(node) == []  # same incarnation: nothing new
    effects = alive(node, incarnation=2, meta=b"v2")
    assert [type(e) for e in effects] == [MemberUpdated]
    assert node.member("peer").meta == b"v2"


def test_refutes_suspicion_and_death_about_itself():
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "me", "peer")), 0.0)
    assert node.incarnation == 2
    assert node.member("me").status is NodeStatus.ALIVE
    assert node.health_score == 1
    node.receive_packet(PEER, packet(codec.encode_dead(7, "me", "peer")), 0.0)
    assert node.incarnation == 8
    assert node.member("me").status is NodeStatus.ALIVE
    assert node.stats.refutations == 2


def test_suspect_then_dead_then_alive_higher_incarnation():
    node = make_node()
    alive(node, incarnation=3)
    node.receive_packet(PEER, packet(codec.encode_suspect(2, "peer", "x")), 0.0)
    assert node.member("peer").status is NodeStatus.ALIVE  # stale incarnation ignored
    node.receive_packet(PEER, packet(codec.encode_suspect(3, "peer", "x")), 0.0)
    assert node.member("peer").status is NodeStatus.SUSPECT
    effects = node.receive_packet(PEER, packet(codec.encode_dead(3, "peer", "x")), 0.0)
    assert node.member("peer").status is NodeStatus.DEAD
    assert [(type(e), e.left) for e in effects] == [(MemberLeft, False)]
    assert alive(node, incarnation=3) == []
    assert [type(e) for e in alive(node, incarnation=4)] == [MemberJoined]


def test_dead_from_itself_means_left():
    node = make_node()
    alive(node)
    effects = node.receive_packet(PEER, packet(codec.encode_dead(1, "peer", "peer")), 0.0)
    assert node.member("peer").status is NodeStatus.LEFT
    assert effects[0].left is True


def test_suspicion_times_out_to_dead():
    node = make_node()
    for index in range(2):
        alive(node, name=f"p{index}", address=("10.0.1.1", 2000 + index))
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "p0", "p1")), 0.0)
    # n = 3 members: no confirmations expected, minimum timeout 4 s applies.
    assert node.next_deadline() <= 4.0
    assert node.tick(3.9) is not None
    assert node.member("p0").status is NodeStatus.SUSPECT
    effects = node.tick(4.0)
    assert node.member("p0").status is NodeStatus.DEAD
    assert any(isinstance(e, MemberLeft) for e in effects)


def test_ping_for_another_name_is_dropped():
    node = make_node()
    assert node.receive_packet(PEER, packet(codec.encode_ping(1, "someone", "p")), 0.0) == []
    assert node.stats.dropped["wrong_target"] == 1


def test_probe_cycle_indirect_then_suspect_with_buddy():
    config = GossipConfig.lan()
    node = make_node(config=config)
    alive(node, name="target", address=PEER)
    alive(node, name="helper", address=OTHER)
    now = 0.0
    pinged = None
    while pinged is None:
        now = node.next_deadline()
        for effect in sends(node.tick(now)):
            first = decode(effect).messages[0]
            if first.WhichOneof("body") != "ping":
                continue
            if first.ping.target == "target":
                pinged = (now, first.ping.seq_no)
            else:  # the helper is healthy
                node.receive_packet(OTHER, packet(codec.encode_ack(first.ping.seq_no)), now)
    sent_at, seq_no = pinged
    # No ack within ProbeTimeout: an indirect ping-req goes to the helper with nack=True.
    effects = node.tick(sent_at + config.probe_timeout)
    requests = [
        decode(e).messages[0]
        for e in sends(effects)
        if decode(e).messages[0].WhichOneof("body") == "indirect_ping"
    ]
    assert len(requests) == 1
    assert requests[0].indirect_ping.nack is True
    assert requests[0].indirect_ping.target == "target"
    # The helper answers with a nack; still no ack by the interval's end: suspect.
    node.receive_packet(OTHER, packet(codec.encode_nack(seq_no)), sent_at + 0.6)
    pending = node.tick(sent_at + config.probe_interval)
    assert node.member("target").status is NodeStatus.SUSPECT
    assert node.health_score == 0  # the one expected nack arrived
    # Next probe of the suspect carries a suspect message (buddy system).
    saw_buddy = False
    for _ in range(20):
        for effect in sends(pending):
            first = decode(effect).messages[0]
            if effect.dest == OTHER and first.WhichOneof("body") == "ping":
                node.receive_packet(OTHER, packet(codec.encode_ack(first.ping.seq_no)), now)
            if effect.dest != PEER:
                continue
            kinds = [m.WhichOneof("body") for m in decode(effect).messages]
            # The suspicion goes first, so the suspect refutes before it acks.
            if kinds[:2] == ["suspect", "ping"]:
                saw_buddy = True
        if saw_buddy:
            break
        now = node.next_deadline()
        pending = node.tick(now)
    assert saw_buddy


def test_missing_nack_raises_health_score():
    node = make_node()
    alive(node, name="target", address=PEER)
    alive(node, name="helper", address=OTHER)
    for _ in range(40):
        node.tick(node.next_deadline())
        if node.member("target").status is NodeStatus.SUSPECT:
            break
    assert node.health_score >= 1


def test_indirect_ping_relays_ack_or_nack():
    node = make_node()
    request = codec.encode_indirect_ping(42, "target", OTHER, True, "asker")
    effects = node.receive_packet(PEER, packet(request), 0.0)
    (ping,) = sends(effects)
    assert ping.dest == OTHER
    local_seq = decode(ping).messages[0].ping.seq_no
    effects = node.receive_packet(OTHER, packet(codec.encode_ack(local_seq)), 0.1)
    (relayed,) = sends(effects)
    assert relayed.dest == PEER
    assert decode(relayed).messages[0].ack.seq_no == 42
    # Another one gets no answer: a nack after ProbeTimeout.
    node.receive_packet(PEER, packet(codec.encode_indirect_ping(43, "t", OTHER, True, "a")), 1.0)
    effects = node.tick(1.5)
    nacks = [e for e in sends(effects) if decode(e).messages[0].WhichOneof("body") == "nack"]
    assert len(nacks) == 1
    assert decode(nacks[0]).messages[0].nack.seq_no == 43


def test_join_starts_push_pull_and_merge():
    a = make_node("a")
    b = make_node("b", seed=2)
    b.address = PEER  # distinct address for the peer core
    effects = a.join([PEER], 0.0)
    (start,) = effects
    assert isinstance(start, StartPushPull)
    assert start.join is True
    response, server_effects = b.handle_push_pull(ME, start.request, 0.0)
    assert any(isinstance(e, MemberJoined) and e.member.name == "a" for e in server_effects)
    client_effects = a.push_pull_response(PEER, response, 0.0)
    assert any(isinstance(e, MemberJoined) and e.member.name == "b" for e in client_effects)


def test_push_pull_rejects_garbage():
    node = make_node()
    with pytest.raises(PushPullRejected):
        node.handle_push_pull(PEER, b"garbage", 0.0)
    assert node.push_pull_response(PEER, b"\x01\x00\x00\xff\xff", 0.0) == []
    assert node.push_pull_response(PEER, None, 0.0) == []
    assert node.stats.push_pulls_failed == 2


def test_leave_broadcasts_dead_from_itself():
    node = make_node()
    alive(node)
    effects = node.leave(1.0)
    dead = [m for e in sends(effects) for m in decode(e).messages if m.WhichOneof("body") == "dead"]
    assert dead
    assert dead[0].dead.node == dead[0].dead.from_node == "me"
    assert node.member("me").status is NodeStatus.LEFT
    # After leaving, a dead message about ourselves is not refuted.
    assert node.has_left


def test_reap_removes_long_dead_members():
    config = GossipConfig.lan(dead_node_reap_time=60.0, reconnect_interval=10.0)
    node = make_node(config=config)
    alive(node)
    node.receive_packet(PEER, packet(codec.encode_dead(1, "peer", "x")), 0.0)
    now = 0.0
    while now < 100:
        now = node.next_deadline()
        node.tick(now)
    assert node.member("peer") is None
    assert node.stats.members_reaped == 1


def test_address_conflict_ignored_but_left_name_reusable():
    node = make_node()
    alive(node)
    assert alive(node, incarnation=5, address=OTHER) == []
    assert node.stats.dropped["address_conflict"] == 1
    node.receive_packet(PEER, packet(codec.encode_dead(1, "peer", "peer")), 0.0)
    effects = alive(node, incarnation=1, address=OTHER)
    assert [type(e) for e in effects] == [MemberJoined]
    assert node.member("peer").address == OTHER


def test_user_broadcast_piggybacked():
    node = make_node()
    alive(node)
    node.broadcast_user(b"hello", 0.0)
    effects = node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "peer")), 0.0)
    kinds = [m.WhichOneof("body") for m in decode(sends(effects)[0]).messages]
    assert "user" in kinds


@pytest.mark.parametrize("host", ["a\x00b", "name.example", "", "10.0.0.300"])
def test_the_core_refuses_member_addresses_that_are_not_ip_literals(host: str) -> None:
    node = make_node()
    alive = codec.encode_alive(5, "intruder", (host, 7946), b"")
    node.receive_packet(PEER, packet(alive), now=0.0)
    assert node.member("intruder") is None
    assert node.stats.dropped["invalid_message"] == 1


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
