"""Incarnations and names from the network: the bounds of gossip/incarnation.py and
controlplane.gossip.names, as tables and as the core applies them (issue 13, attack 2)."""

from __future__ import annotations

import pytest

from controlplane.gossip import NodeStatus, codec
from controlplane.gossip.incarnation import (
    MAX_INCARNATION_STEP,
    ahead,
    newer,
    next_incarnation,
    older,
    refutation,
    within_step,
)
from tests.unit.gossip.helpers import PEER, make_node, packet

TOP = 2**32 - 1


@pytest.mark.parametrize(
    ("new", "known", "is_newer", "is_older"),
    [
        (2, 1, True, False),
        (1, 1, False, False),
        (1, 2, False, True),
        (1, TOP, True, False),  # past the top of the circle: newer
        (TOP, 1, False, True),  # the forged Dead{2**32-1} about a member at 1: older
        (2**31, 1, True, False),  # just under half the circle ahead
        (2**31 + 1, 1, False, True),  # half the circle ahead: behind (RFC 1982)
    ],
)
def test_serial_order(new: int, known: int, is_newer: bool, is_older: bool) -> None:
    assert newer(new, known) is is_newer
    assert older(new, known) is is_older


@pytest.mark.parametrize(
    ("new", "known", "ok"),
    [
        (1 + MAX_INCARNATION_STEP, 1, True),
        (2 + MAX_INCARNATION_STEP, 1, False),
        (TOP, TOP - MAX_INCARNATION_STEP, True),
        (MAX_INCARNATION_STEP - 1, TOP, True),  # a step across the top
        (1, 5, True),  # older: within (the rules ignore it)
    ],
)
def test_within_step(new: int, known: int, ok: bool) -> None:
    assert within_step(new, known) is ok


@pytest.mark.parametrize(("current", "following"), [(1, 2), (TOP - 1, TOP), (TOP, 1), (0, 1)])
def test_next_incarnation_skips_zero(current: int, following: int) -> None:
    assert next_incarnation(current) == following
    assert newer(following, current) or current == 0


@pytest.mark.parametrize(
    ("own", "accused", "result"),
    [(1, 1, 2), (3, 1, 4), (1, 9, 10), (1, TOP, 2), (TOP, TOP, 1), (5, TOP, 6)],
)
def test_refutation_out_bids(own: int, accused: int, result: int) -> None:
    assert refutation(own, accused) == result
    assert newer(result, accused) or older(accused, own)


def test_ahead_is_modular() -> None:
    assert ahead(1, TOP) == 2
    assert ahead(TOP, 1) == TOP - 1


def _with_peer(incarnation: int = 1):
    node = make_node()
    node.receive_packet(PEER, packet(codec.encode_alive(incarnation, "peer", PEER, b"")), 0.0)
    return node


def test_forged_dead_at_the_top_does_not_evict() -> None:
    node = _with_peer()
    node.receive_packet(PEER, packet(codec.encode_dead(TOP, "peer", "x")), 1.0)
    member = node.member("peer")
    assert member is not None
    assert member.status is NodeStatus.ALIVE
    assert member.incarnation == 1


def test_accusation_beyond_the_step_is_counted_and_dropped() -> None:
    node = _with_peer()
    far = 2 + MAX_INCARNATION_STEP
    node.receive_packet(PEER, packet(codec.encode_suspect(far, "peer", "x")), 1.0)
    node.receive_packet(PEER, packet(codec.encode_dead(far, "peer", "x")), 1.0)
    node.receive_packet(PEER, packet(codec.encode_alive(far, "peer", PEER, b"m")), 1.0)
    member = node.member("peer")
    assert member is not None
    assert member.status is NodeStatus.ALIVE
    assert member.incarnation == 1
    assert node.stats.dropped["incarnation_step"] == 3


def test_accusation_within_the_step_is_believed() -> None:
    node = _with_peer()
    node.receive_packet(PEER, packet(codec.encode_dead(1 + MAX_INCARNATION_STEP, "peer", "x")), 1.0)
    member = node.member("peer")
    assert member is not None
    assert member.status is NodeStatus.DEAD


def test_dead_member_comes_back_at_any_newer_incarnation() -> None:
    # A member we lost touch with may have refuted many times meanwhile: nothing
    # recent to compare with, so its return is not held to the step.
    node = _with_peer()
    node.receive_packet(PEER, packet(codec.encode_dead(1, "peer", "x")), 1.0)
    back = 10 * MAX_INCARNATION_STEP
    node.receive_packet(PEER, packet(codec.encode_alive(back, "peer", PEER, b"")), 2.0)
    member = node.member("peer")
    assert member is not None
    assert member.status is NodeStatus.ALIVE
    assert member.incarnation == back


def test_many_bounded_steps_never_saturate() -> None:
    """An attacker walks the member's incarnation up the whole circle, one step at
    a time: every accusation is refuted by a newer incarnation, across the top."""
    node = make_node()
    accused = node.incarnation
    wrapped = False
    for _ in range(2**32 // MAX_INCARNATION_STEP + 2):
        accused = (node.incarnation + MAX_INCARNATION_STEP) % 2**32
        before = node.incarnation
        node.receive_packet(PEER, packet(codec.encode_dead(accused, "me", "x")), 1.0)
        assert newer(node.incarnation, accused)
        wrapped = wrapped or node.incarnation < before
    assert wrapped
    assert node.member("me").status is NodeStatus.ALIVE


@pytest.mark.parametrize(
    "name", ["", "a" * 129, "evil\nleave", "a b", "tab\t", "nul\x00", "ü", "semi;colon"]
)
def test_names_outside_the_rule_are_refused_on_every_message(name: str) -> None:
    node = _with_peer()
    messages = [
        codec.encode_alive(1, name, ("10.0.0.3", 7946), b""),
        codec.encode_suspect(1, name, "peer"),
        codec.encode_dead(1, name, "peer"),
        codec.encode_suspect(1, "peer", name),
        codec.encode_dead(1, "peer", name),
        codec.encode_indirect_ping(1, name, ("10.0.0.3", 7946), True, "peer"),
    ]
    effects = node.receive_packet(PEER, packet(*messages), 1.0)
    assert {m.name for m in node.members()} == {"me", "peer"}
    assert node.member("peer").status is NodeStatus.ALIVE
    assert not effects
    dropped = node.stats.dropped
    assert dropped["invalid_name"] == 4
    assert dropped["invalid_message"] == 2


def test_push_pull_records_with_bad_names_are_refused() -> None:
    from controlplane.wire.v1 import gossip_pb2 as pb

    node = make_node()
    state = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    state.members.add(
        name="x\nleave",
        address=pb.Address(host="10.0.0.4", port=1),
        incarnation=1,
        status=pb.MEMBER_STATUS_ALIVE,
    )
    state.members.add(name="y z", incarnation=1, status=pb.MEMBER_STATUS_LEFT)
    request = codec.seal(codec.frame_header("", False), state.SerializeToString(), None)
    node.handle_push_pull(PEER, request, 1.0)
    assert {m.name for m in node.members()} == {"me"}


def test_local_name_must_follow_the_rule() -> None:
    with pytest.raises(ValueError, match="node name"):
        make_node("bad name")
