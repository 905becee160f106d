"""memberlist's TCP fallback ping, driven by hand: a probe whose UDP ping goes
unanswered also pings the member over its stream port (``StartStreamPing``), its
suspicion waits for that ping's outcome until the probe interval ends, and the
member's side (``answer_stream_ping``) answers only a well-formed ping of itself."""

from __future__ import annotations

import random

import pytest

from controlplane.gossip import (
    GossipConfig,
    GossipNode,
    Keyring,
    NodeStatus,
    ReachedOnlyByStream,
    StartStreamPing,
    StreamPingRefused,
    codec,
)

from .helpers import PEER, make_node, packet
from .test_detection import HELPER, alive, next_probe_of

CONFIG = GossipConfig.lan()
FLOOR = CONFIG.probe_timeout_floor
# The member probed, as its own core: it answers the stream pings of "me".
TARGET_CONFIG = GossipConfig.lan()


def target_core(keyring: Keyring | None = None) -> GossipNode:
    return GossipNode(TARGET_CONFIG, "target", PEER, rng=random.Random(2), now=0.0, keyring=keyring)


def stream_pings(effects) -> list[StartStreamPing]:
    return [e for e in effects if isinstance(e, StartStreamPing)]


def probe_gone_silent():
    """A member that knows "target" and "helper" and has measured its round trip to them,
    probing "target" whose UDP ping went unanswered: returns (node, time of the ping,
    the StartStreamPing)."""
    node = make_node(config=CONFIG)
    alive(node, "target", PEER)
    alive(node, "helper", HELPER)
    sent, seq = next_probe_of(node, PEER, 0.0)
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + 0.002)
    sent, seq = next_probe_of(node, PEER, sent)
    assert stream_pings(node.tick(sent + FLOOR - 0.001)) == []
    (ping,) = stream_pings(node.tick(sent + FLOOR))
    assert ping.seq_no == seq
    return node, sent, ping


def test_an_unanswered_udp_ping_is_followed_by_a_stream_ping_until_the_interval_ends():
    node, sent, ping = probe_gone_silent()
    assert ping.dest == PEER
    # memberlist's deadline: the probe's start plus its (health-scaled) interval.
    assert ping.timeout == pytest.approx(sent + CONFIG.probe_interval - (sent + FLOOR))
    (message,) = codec.decode_packet(codec.open_frame(ping.request, b"", None)).messages
    assert message.ping.seq_no == ping.seq_no
    assert message.ping.target == "target"
    assert message.ping.source_node == "me"
    assert node.stats.stream_pings_sent == 1


def test_an_answer_over_the_stream_keeps_the_member_alive_and_says_udp_fails():
    node, sent, ping = probe_gone_silent()
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "me", "target")), sent)
    score = node.health_score
    # Past the time a UDP-only probe suspects: the stream ping is still out.
    node.tick(sent + 3 * FLOOR)
    assert node.member("target").status is NodeStatus.ALIVE
    answer = target_core().answer_stream_ping(ping.request)
    effects = node.stream_ping_response(ping.seq_no, answer, sent + 3 * FLOOR + 0.01)
    assert effects == [ReachedOnlyByStream("target", PEER)]
    assert node.stats.stream_pings_answered == 1
    # memberlist: a probe answered over TCP counts as answered (its health improves).
    assert node.health_score == score - 1
    # Nothing is left of the probe: no suspicion later, no timer of it.
    node.tick(sent + CONFIG.probe_interval)
    assert node.member("target").status is NodeStatus.ALIVE
    assert node.stats.probes_failed == 0
    assert node.next_deadline() > sent + 3 * FLOOR + 0.01


def test_a_refused_stream_ping_lets_the_suspicion_come_on_time():
    node, sent, ping = probe_gone_silent()
    node.stream_ping_response(ping.seq_no, None, sent + FLOOR + 0.001)
    assert node.stats.stream_pings_failed == 1
    node.tick(sent + 3 * FLOOR - 0.001)
    assert node.member("target").status is NodeStatus.ALIVE
    node.tick(sent + 3 * FLOOR)
    assert node.member("target").status is NodeStatus.SUSPECT


def test_a_stream_ping_failing_after_the_suspicion_was_due_suspects_at_once():
    node, sent, ping = probe_gone_silent()
    node.tick(sent + 5 * FLOOR)
    assert node.member("target").status is NodeStatus.ALIVE
    node.stream_ping_response(ping.seq_no, None, sent + 6 * FLOOR)
    assert node.member("target").status is NodeStatus.SUSPECT


def test_a_stream_ping_without_outcome_suspects_at_the_end_of_the_interval():
    # A hung or black-holed member: the call hangs; memberlist waits out the interval.
    node, sent, ping = probe_gone_silent()
    node.tick(sent + CONFIG.probe_interval - 0.001)
    assert node.member("target").status is NodeStatus.ALIVE
    node.tick(sent + CONFIG.probe_interval)
    assert node.member("target").status is NodeStatus.SUSPECT
    assert node.stats.stream_pings_failed == 1
    # An answer after the deadline changes nothing and is not counted twice.
    late = target_core().answer_stream_ping(ping.request)
    assert node.stream_ping_response(ping.seq_no, late, sent + CONFIG.probe_interval + 0.1) == []
    assert node.stats.stream_pings_answered == 0
    assert node.stats.stream_pings_failed == 1


def test_an_ack_over_udp_while_the_stream_ping_is_out_settles_the_probe():
    node, sent, ping = probe_gone_silent()
    node.receive_packet(PEER, packet(codec.encode_ack(ping.seq_no)), sent + FLOOR + 0.005)
    answer = target_core().answer_stream_ping(ping.request)
    assert node.stream_ping_response(ping.seq_no, answer, sent + FLOOR + 0.01) == []
    assert node.stats.stream_pings_answered == 0
    node.tick(sent + CONFIG.probe_interval)
    assert node.member("target").status is NodeStatus.ALIVE


@pytest.mark.parametrize(
    ("make_answer", "reason"),
    [
        (lambda seq: packet(codec.encode_ack(seq + 1)), None),  # another probe's ack
        (lambda seq: packet(codec.encode_nack(seq)), "invalid_message"),
        (lambda seq: packet(codec.encode_ack(seq), codec.encode_ack(seq)), "invalid_message"),
        (lambda seq: b"\x01\x00", "truncated"),
        (lambda seq: packet(codec.encode_ack(seq), label="other"), "label"),
    ],
)
def test_a_wrong_answer_is_a_failed_stream_ping(make_answer, reason):
    node, sent, ping = probe_gone_silent()
    node.stream_ping_response(ping.seq_no, make_answer(ping.seq_no), sent + 4 * FLOOR)
    assert node.stats.stream_pings_failed == 1
    assert node.stats.stream_pings_answered == 0
    assert node.member("target").status is NodeStatus.SUSPECT
    if reason is not None:
        assert node.stats.dropped[reason] == 1


def test_without_tcp_pings_no_stream_ping_is_sent():
    node = make_node(config=GossipConfig.lan(tcp_pings=False))
    alive(node, "target", PEER)
    alive(node, "helper", HELPER)
    sent, _seq = next_probe_of(node, PEER, 0.0)
    effects = [*node.tick(sent + FLOOR), *node.tick(sent + 3 * FLOOR)]
    assert stream_pings(effects) == []
    assert node.member("target").status is NodeStatus.SUSPECT


def test_stream_pings_work_between_members_sharing_a_key():
    keyring = Keyring([bytes(range(16))])
    node = make_node(keyring=keyring)
    node.receive_packet(
        PEER, packet(codec.encode_alive(1, "target", PEER, b""), keyring=keyring), 0
    )
    pings: list[StartStreamPing] = []
    while not pings:
        now = node.next_deadline()
        pings = stream_pings(node.tick(now))
    (ping,) = pings
    answer = target_core(keyring).answer_stream_ping(ping.request)
    assert node.stream_ping_response(ping.seq_no, answer, now + 0.01) != []
    assert node.stats.stream_pings_answered == 1
    # A member under another key cannot open it, and its refusal is no answer.
    with pytest.raises(StreamPingRefused):
        target_core(Keyring([bytes(16)])).answer_stream_ping(ping.request)


def ping_frame(*messages: bytes, label: str = "", keyring: Keyring | None = None) -> bytes:
    return packet(*messages, label=label, keyring=keyring)


def test_a_member_answers_a_ping_of_itself_with_the_same_sequence_number():
    target = target_core()
    for name in ("target", ""):  # memberlist answers a ping that names no one too
        answer = target.answer_stream_ping(ping_frame(codec.encode_ping(99, name, "me")))
        (message,) = codec.decode_packet(codec.open_frame(answer, b"", None)).messages
        assert message.WhichOneof("body") == "ack"
        assert message.ack.seq_no == 99
    assert target.stats.stream_pings_served == 2


@pytest.mark.parametrize(
    ("request_frame", "reason"),
    [
        # The address was reused by another member: no ack for someone else's probe.
        (ping_frame(codec.encode_ping(1, "someone-else", "me")), "wrong_target"),
        (ping_frame(codec.encode_ack(1)), "invalid_message"),
        (
            ping_frame(codec.encode_ping(1, "target", "me"), codec.encode_ping(2, "target", "me")),
            "invalid_message",
        ),
        (ping_frame(), "invalid_message"),
        (ping_frame(codec.encode_ping(1, "target", "me"), label="other"), "label"),
        (
            ping_frame(codec.encode_ping(1, "target", "me"), keyring=Keyring([bytes(16)])),
            "encrypted_without_keyring",
        ),
        (b"\x01\x00\x00garbage", "decode"),
        (b"\x01\x00\x00" + bytes(TARGET_CONFIG.max_packet_size), "oversized"),
    ],
    # Named by case, not by frame: an encrypted frame differs on every run (its
    # nonce), and parallel workers must collect the same test ids.
    ids=[
        "someone_else",
        "an_ack",
        "two_pings",
        "empty",
        "other_label",
        "encrypted",
        "garbage",
        "oversized",
    ],
)
def test_a_member_refuses_what_is_not_one_ping_of_itself(request_frame, reason):
    target = target_core()
    with pytest.raises(StreamPingRefused) as refused:
        target.answer_stream_ping(request_frame)
    assert refused.value.reason == reason
    assert target.stats.dropped[reason] == 1
    assert target.stats.stream_pings_served == 0


def test_a_member_with_a_key_refuses_a_ping_in_clear_or_under_another_key():
    target = target_core(Keyring([bytes(range(16))]))
    ping = codec.encode_ping(1, "target", "me")
    for frame, reason in (
        (ping_frame(ping), "plaintext"),
        (ping_frame(ping, keyring=Keyring([bytes(16)])), "decrypt"),
    ):
        with pytest.raises(StreamPingRefused) as refused:
            target.answer_stream_ping(frame)
        assert refused.value.reason == reason
