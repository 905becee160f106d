"""Property tests of SWIM's incarnation and refutation rules under any message order."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.gossip import GossipConfig, GossipNode, NodeStatus, codec

SRC = ("10.0.0.9", 7946)
ADDRESS = ("10.0.0.2", 7946)
MY_ADDRESS = ("10.0.0.1", 7946)

PROFILE = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

kinds = st.sampled_from(["alive", "suspect", "dead", "left"])
messages = st.lists(st.tuples(kinds, st.integers(min_value=1, max_value=6)), max_size=25)

RANK = {NodeStatus.ALIVE: 0, NodeStatus.SUSPECT: 1, NodeStatus.DEAD: 2, NodeStatus.LEFT: 2}


def encode(kind: str, incarnation: int, subject: str) -> bytes:
    if kind == "alive":
        address = MY_ADDRESS if subject == "me" else ADDRESS
        return codec.encode_alive(incarnation, subject, address, b"")
    if kind == "suspect":
        return codec.encode_suspect(incarnation, subject, "accuser")
    if kind == "dead":
        return codec.encode_dead(incarnation, subject, "accuser")
    return codec.encode_dead(incarnation, subject, subject)


def send(node: GossipNode, message: bytes, now: float) -> None:
    header = codec.frame_header("", False)
    node.receive_packet(SRC, codec.seal(header, codec.packet_body([message]), None), now)


def new_node() -> GossipNode:
    return GossipNode(GossipConfig.lan(), "me", MY_ADDRESS, rng=random.Random(0), now=0.0)


@PROFILE
@given(messages)
def test_state_about_a_peer_follows_the_rules(sequence):
    node = new_node()
    send(node, codec.encode_alive(1, "peer", ADDRESS, b""), 0.0)
    for step, (kind, incarnation) in enumerate(sequence, start=1):
        before = node.member("peer")
        assert before is not None
        send(node, encode(kind, incarnation, "peer"), float(step) * 0.001)
        after = node.member("peer")
        assert after is not None
        # Incarnations never go down.
        assert after.incarnation >= before.incarnation
        if after.incarnation == before.incarnation and after.status != before.status:
            # At equal incarnation a state only moves forward: alive < suspect < dead/left,
            # except that a reclaimed (left) name may come back alive.
            assert RANK[after.status] > RANK[before.status]
        if kind == "alive" and incarnation > before.incarnation:
            assert after.status is NodeStatus.ALIVE
            assert after.incarnation == incarnation
        if (
            kind in ("dead", "left")
            and incarnation >= before.incarnation
            and not before.status.dead_or_left
        ):
            expected = NodeStatus.LEFT if kind == "left" else NodeStatus.DEAD
            assert after.status is expected
        if (
            kind == "suspect"
            and before.status is NodeStatus.ALIVE
            and incarnation >= before.incarnation
        ):
            assert after.status is NodeStatus.SUSPECT
        if incarnation < before.incarnation:
            assert after == before


@PROFILE
@given(messages)
def test_a_member_never_accepts_its_own_death(sequence):
    node = new_node()
    for step, (kind, incarnation) in enumerate(sequence, start=1):
        before = node.incarnation
        send(node, encode(kind, incarnation, "me"), float(step))
        me = node.member("me")
        assert me is not None
        assert me.status is NodeStatus.ALIVE
        if kind != "alive" and incarnation >= before:
            # Refuted: out-bids the accusation.
            assert node.incarnation > incarnation
        if kind == "alive" and incarnation > before:
            assert node.incarnation > incarnation
        assert node.incarnation >= before


@PROFILE
@given(messages, st.randoms(use_true_random=False))
def test_a_strictly_highest_alive_wins_in_any_order(sequence, shuffler):
    # Order matters in SWIM in general (a dead member ignores later deaths), but an
    # alive message whose incarnation beats every other message wins in every order.
    a, b = new_node(), new_node()
    for node in (a, b):
        send(node, codec.encode_alive(1, "peer", ADDRESS, b""), 0.0)
    sequence = [*sequence, ("alive", 7)]
    shuffled = list(sequence)
    shuffler.shuffle(shuffled)
    for node, order in ((a, sequence), (b, shuffled)):
        for step, (kind, incarnation) in enumerate(order):
            send(node, encode(kind, incarnation, "peer"), step * 0.001)
        view = node.member("peer")
        assert view is not None
        assert view.status is NodeStatus.ALIVE
        assert view.incarnation == 7
