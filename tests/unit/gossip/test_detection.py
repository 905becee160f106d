"""Failure detection beyond memberlist, driven by hand-made packets: the probe timeout
adapted to the measured round trip, probes of a suspect by those who learn of the
suspicion, the last check before declaring, and stale suspicions resolved.

The nodes here speak UDP only (``tcp_pings=False``): a probe's stream ping holds its
suspicion until the ping's outcome, which these tests do not answer; the stream ping
has its own tests (test_stream_ping.py)."""

from __future__ import annotations

import pytest

from controlplane.gossip import GossipConfig, NodeStatus, SendPacket, codec
from controlplane.gossip.rtt import RttEstimator

from .helpers import PEER, decode, make_node, packet, sends

HELPER = ("10.0.0.3", 7946)
# Acks in these tests come back this long after their ping.
RTT = 0.002


def alive(node, name, address, incarnation=1, now=0.0):
    return node.receive_packet(
        address, packet(codec.encode_alive(incarnation, name, address, b"")), now
    )


def kinds(effect: SendPacket) -> list[str]:
    return [m.WhichOneof("body") for m in decode(effect).messages]


def pings(effects, dest):
    return [
        m.ping.seq_no
        for e in sends(effects)
        if e.dest == dest
        for m in decode(e).messages
        if m.WhichOneof("body") == "ping"
    ]


def indirect_requests(effects):
    return [e for e in sends(effects) if "indirect_ping" in kinds(e)]


def next_probe_of(node, dest, now):
    """Tick until ``node`` pings ``dest``; pings to others are acked after RTT.
    Returns the time of the ping and its sequence number."""
    for _ in range(100):
        now = node.next_deadline()
        effects = node.tick(now)
        for effect in sends(effects):
            for seq in pings([effect], effect.dest):
                if effect.dest == dest:
                    return now, seq
                node.receive_packet(effect.dest, packet(codec.encode_ack(seq)), now + RTT)
    raise AssertionError(f"no probe of {dest}")


UDP_ONLY = GossipConfig.lan(tcp_pings=False)


def measured_node(config: GossipConfig = UDP_ONLY):
    """A member that knows "target" (PEER) and "helper" (HELPER) and has measured a
    round trip of RTT to the target."""
    node = make_node(config=config)
    alive(node, "target", PEER)
    alive(node, "helper", HELPER)
    sent, seq = next_probe_of(node, PEER, 0.0)
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + RTT)
    return node, sent + RTT


def test_the_probe_timeout_follows_the_measured_round_trip():
    config = UDP_ONLY
    node, now = measured_node(config)
    sent, _seq = next_probe_of(node, PEER, now)
    # RTT is far below the floor: the timeout is the floor, the suspicion three of it.
    floor = config.probe_timeout_floor
    assert indirect_requests(node.tick(sent + floor - 0.001)) == []
    assert len(indirect_requests(node.tick(sent + floor))) == 1
    node.tick(sent + 3 * floor - 0.001)
    assert node.member("target").status is NodeStatus.ALIVE
    node.tick(sent + 3 * floor)
    assert node.member("target").status is NodeStatus.SUSPECT


def test_without_adaptation_the_probe_waits_as_memberlist_does():
    config = GossipConfig.lan(adaptive_probe_timeout=False)
    node, now = measured_node(config)
    sent, _seq = next_probe_of(node, PEER, now)
    assert indirect_requests(node.tick(sent + 0.3)) == []
    assert len(indirect_requests(node.tick(sent + config.probe_timeout))) == 1
    node.tick(sent + config.probe_interval - 0.001)
    assert node.member("target").status is NodeStatus.ALIVE
    node.tick(sent + config.probe_interval)
    assert node.member("target").status is NodeStatus.SUSPECT


def test_an_answered_probe_leaves_no_timer_behind():
    # An idle agent's CPU is its wake-ups: the timeout of a probe already answered
    # must not be the next deadline.
    config = GossipConfig.lan()
    node, now = measured_node(config)
    sent, seq = next_probe_of(node, PEER, now)
    assert node.next_deadline() <= sent + config.probe_timeout_floor
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + RTT)
    assert node.next_deadline() >= sent + config.probe_interval / 2


def test_an_ack_after_the_suspicion_raises_the_health_score():
    node, now = measured_node()
    sent, seq = next_probe_of(node, PEER, now)
    node.tick(sent + 0.2)
    assert node.member("target").status is NodeStatus.SUSPECT
    assert node.health_score == 0
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + 0.3)
    assert node.stats.late_acks == 1
    assert node.health_score == 1


def test_an_ack_in_time_lowers_the_health_score():
    node, now = measured_node()
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "me", "target")), now)
    assert node.health_score == 1
    sent, seq = next_probe_of(node, PEER, now)
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + RTT)
    assert node.health_score == 0
    assert node.stats.late_acks == 0


def test_a_relay_nacks_at_its_own_timeout_and_still_relays_a_late_ack():
    config = GossipConfig.lan()
    node, now = measured_node(config)
    request = codec.encode_indirect_ping(42, "target", PEER, True, "asker")
    effects = node.receive_packet(HELPER, packet(request), now)
    (seq,) = pings(effects, PEER)
    floor = config.probe_timeout_floor
    nacks = [e for e in sends(node.tick(now + floor)) if "nack" in kinds(e)]
    assert [e.dest for e in nacks] == [HELPER]
    effects = node.receive_packet(PEER, packet(codec.encode_ack(seq)), now + 0.3)
    (relayed,) = sends(effects)
    assert relayed.dest == HELPER
    assert decode(relayed).messages[0].ack.seq_no == 42
    # After memberlist's ProbeTimeout nothing is relayed any more.
    request = codec.encode_indirect_ping(43, "target", PEER, True, "asker")
    (seq,) = pings(node.receive_packet(HELPER, packet(request), now + 1.0), PEER)
    node.tick(now + 1.0 + config.probe_timeout)
    assert sends(node.receive_packet(PEER, packet(codec.encode_ack(seq)), now + 1.6)) == []


def five_member_node(config: GossipConfig = UDP_ONLY):
    node, now = measured_node(config)
    for index in range(3):
        alive(node, f"other{index}", (f"10.0.1.{index + 1}", 7946), now=now)
    return node, now


@pytest.mark.parametrize("enabled", [True, False])
def test_learning_of_a_suspicion_probes_the_suspect_at_once(enabled):
    config = GossipConfig.lan(suspicion_probes=enabled)
    node, now = five_member_node(config)
    effects = node.receive_packet(HELPER, packet(codec.encode_suspect(1, "target", "helper")), now)
    to_target = [e for e in sends(effects) if e.dest == PEER]
    if not enabled:
        assert to_target == []
        return
    # The suspicion first (so that the ack brings a refutation back), then the ping.
    (probe,) = to_target
    assert kinds(probe)[:2] == ["suspect", "ping"]
    assert node.stats.suspicion_probes_sent == 1
    # It takes memberlist's full time although the measured round trip is short.
    assert indirect_requests(node.tick(now + 0.3)) == []
    assert indirect_requests(node.tick(now + config.probe_timeout)) != []


def test_a_confirmation_from_our_own_probe_shortens_the_suspicion():
    # Six members: Lifeguard expects 2 confirmations; min 4 s, max 24 s.
    node, now = five_member_node()
    node.receive_packet(HELPER, packet(codec.encode_suspect(1, "target", "helper")), now)
    # Our probe fails at the end of the interval: one confirmation, 24 - 20 * ln 2 / ln 3.
    node.tick(now + 1.0)
    node.tick(now + 11.3)
    assert node.member("target").status is NodeStatus.SUSPECT
    node.tick(now + 11.4)
    assert node.member("target").status is NodeStatus.DEAD


def test_a_suspicion_at_a_higher_incarnation_replaces_the_one_held():
    # Three members: no confirmations expected, the minimum (4 s) applies at once.
    node = make_node(config=GossipConfig.lan(suspicion_probes=False))
    alive(node, "target", PEER)
    alive(node, "helper", HELPER)
    node.receive_packet(HELPER, packet(codec.encode_suspect(1, "target", "helper")), 0.0)
    # The target refuted (we missed it) and was suspected again at its new incarnation.
    node.receive_packet(HELPER, packet(codec.encode_suspect(2, "target", "helper")), 3.0)
    assert node.member("target").incarnation == 2
    node.tick(5.0)
    assert node.member("target").status is NodeStatus.SUSPECT
    node.tick(7.0)
    assert node.member("target").status is NodeStatus.DEAD


@pytest.mark.parametrize("kind", ["suspect", "dead"])
def test_an_accusation_older_than_our_incarnation_is_answered_with_our_alive(kind):
    node = make_node()
    alive(node, "peer", PEER)
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "me", "peer")), 0.0)
    assert node.incarnation == 2
    encode = codec.encode_suspect if kind == "suspect" else codec.encode_dead
    effects = node.receive_packet(PEER, packet(encode(1, "me", "peer")), 1.0)
    (answer,) = [e for e in sends(effects) if e.dest == PEER]
    first = decode(answer).messages[0]
    assert (first.alive.node, first.alive.incarnation) == ("me", 2)
    assert node.incarnation == 2


def checks(effects):
    """Packets to the target that carry a ping (gossip to it carries none)."""
    return [e for e in sends(effects) if e.dest == PEER and "ping" in kinds(e)]


def three_member_suspicion(config: GossipConfig):
    node = make_node(config=config)
    alive(node, "target", PEER)
    alive(node, "helper", HELPER)
    node.receive_packet(HELPER, packet(codec.encode_suspect(1, "target", "helper")), 0.0)
    return node


def test_a_suspect_is_pinged_once_more_before_it_is_declared():
    # Three members: the minimum, 4 s. No round trip measured: the check leads by the
    # interval (three probe timeouts of 0.5 s, at most the interval).
    node = three_member_suspicion(GossipConfig.lan())
    assert checks(node.tick(2.9)) == []
    (check,) = checks(node.tick(3.0))
    assert kinds(check)[:2] == ["suspect", "ping"]
    # The suspect refutes before it acks; the ack carries the refutation.
    seq = decode(check).messages[1].ping.seq_no
    answer = packet(codec.encode_ack(seq), codec.encode_alive(2, "target", PEER, b""))
    node.receive_packet(PEER, answer, 3.01)
    node.tick(4.0)
    assert node.member("target").status is NodeStatus.ALIVE


def test_a_silent_suspect_is_declared_at_the_deadline_after_the_check():
    node = three_member_suspicion(GossipConfig.lan())
    node.tick(3.0)
    node.tick(3.999)
    assert node.member("target").status is NodeStatus.SUSPECT
    node.tick(4.0)
    assert node.member("target").status is NodeStatus.DEAD


def test_no_check_without_suspicion_probes():
    node = three_member_suspicion(GossipConfig.lan(suspicion_probes=False))
    for now in (3.0, 3.5, 3.999):
        assert checks(node.tick(now)) == []


def test_rtt_estimator_follows_rfc_6298():
    rtt = RttEstimator()
    assert rtt.srtt is None
    expected = [(0.1, 0.1, 0.05), (0.2, 0.1125, 0.0625), (0.1, 0.1109375, 0.05)]
    for sample, srtt, rttvar in expected:
        rtt.sample(sample)
        assert rtt.srtt == pytest.approx(srtt)
        assert rtt.rttvar == pytest.approx(rttvar)
    assert rtt.samples == 3


def test_an_ack_after_the_suspicion_costs_nothing_when_the_relays_had_nacked():
    # The relay said in time that the target was silent to it too: the target is slow.
    node, now = measured_node()
    sent, seq = next_probe_of(node, PEER, now)
    (request,) = indirect_requests(node.tick(sent + 0.04))
    relay_seq = decode(request).messages[0].indirect_ping.seq_no
    node.receive_packet(HELPER, packet(codec.encode_nack(relay_seq)), sent + 0.09)
    node.tick(sent + 0.2)
    assert node.member("target").status is NodeStatus.SUSPECT
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + 0.3)
    assert node.stats.late_acks == 1
    assert node.health_score == 0


def indirect_after(node, sent: float, *, nack: bool = False) -> float:
    """Seconds from the ping at ``sent`` to its indirect probes (ticks every 10 ms); with
    ``nack``, every relay answers with a nack 10 ms later."""
    for step in range(1, 200):
        requests = indirect_requests(node.tick(sent + step / 100))
        if requests:
            for request in requests if nack else ():
                relay_seq = decode(request).messages[0].indirect_ping.seq_no
                node.receive_packet(
                    request.dest, packet(codec.encode_nack(relay_seq)), sent + step / 100 + 0.01
                )
            return step / 100
    raise AssertionError("no indirect probe")


def nack_indirect(node, sent: float, at: float) -> None:
    """Tick to ``at``; every relay asked by then answers with a nack 10 ms later."""
    for request in indirect_requests(node.tick(at)):
        relay_seq = decode(request).messages[0].indirect_ping.seq_no
        node.receive_packet(request.dest, packet(codec.encode_nack(relay_seq)), at + 0.01)


def test_a_slow_member_gets_a_longer_timeout_than_the_others():
    node, now = five_member_node()
    # The target answers one probe after 0.3 s, after the relays' nacks: it is the slow
    # one, not us (no health penalty).
    sent, seq = next_probe_of(node, PEER, now)
    nack_indirect(node, sent, sent + 0.04)
    node.tick(sent + 0.2)
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), sent + 0.3)
    node.receive_packet(PEER, packet(codec.encode_alive(2, "target", PEER, b"")), sent + 0.31)
    assert node.health_score == 0
    # Four fast members are probed (and ack at once) before the target's next turn.
    sent, _seq = next_probe_of(node, PEER, sent + 0.31)
    slow = indirect_after(node, sent, nack=True)
    # Its own srtt + 4 * rttvar: 0.039 + 4 * 0.075 s.
    assert slow == pytest.approx(0.35)
    node.tick(sent + 1.0)
    assert node.health_score == 0
    # The others' estimate (all samples, the slow one fading) is far shorter.
    sent, _seq = next_probe_of(node, HELPER, sent + 1.0)
    assert indirect_after(node, sent) <= 0.15


def test_a_hint_probes_the_member_at_once_and_the_protocol_does_the_rest():
    config = UDP_ONLY
    node, now = measured_node(config)
    effects = node.probe_now("target", now + 0.01)
    assert pings(effects, PEER), "no probe of the hinted member"
    assert node.stats.hinted_probes == 1
    # No answer: an ordinary suspicion after three probe timeouts, not a death.
    node.tick(now + 0.01 + 3 * config.probe_timeout_floor)
    assert node.member("target").status is NodeStatus.SUSPECT


def test_a_hinted_member_that_answers_is_left_alone():
    node, now = measured_node()
    (seq,) = pings(node.probe_now("target", now + 0.01), PEER)
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), now + 0.01 + RTT)
    node.tick(now + 0.5)
    assert node.member("target").status is NodeStatus.ALIVE
    assert node.stats.suspicions_raised == 0


def test_hints_are_bounded_to_one_probe_per_interval_and_member():
    config = GossipConfig.lan()
    node, now = measured_node(config)
    (seq,) = pings(node.probe_now("target", now), PEER)
    # In flight: a second hint adds nothing.
    assert pings(node.probe_now("target", now + 0.001), PEER) == []
    node.receive_packet(PEER, packet(codec.encode_ack(seq)), now + RTT)
    # Answered, but within the interval: a flapping connection is no probe storm.
    assert pings(node.probe_now("target", now + config.probe_interval / 2), PEER) == []
    assert pings(node.probe_now("target", now + config.probe_interval + 0.01), PEER)
    assert node.stats.hinted_probes == 2


def test_hints_about_ourselves_unknown_or_suspect_members_are_ignored():
    node, now = measured_node()
    assert node.probe_now("me", now) == []
    assert node.probe_now("nobody", now) == []
    node.receive_packet(PEER, packet(codec.encode_suspect(1, "target", "helper")), now)
    assert node.member("target").status is NodeStatus.SUSPECT
    assert pings(node.probe_now("target", now + 5.0), PEER) == []
    assert node.stats.hinted_probes == 0
