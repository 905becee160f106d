"""The crowd's pure parts: addresses, the broadcast queue, and CrowdCore against a real agent core.

The agent side is the real sans-IO ``Membership`` layer (with its gossip core);
a small pump carries datagrams and push-pull frames between it and the crowd on a
virtual clock, so whole scenarios run without sockets or sleeps.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable

import pytest

from controlplane.gossip import GossipConfig, Keyring, SendPacket, StartPushPull, codec
from controlplane.gossip.state import NodeStatus
from controlplane.membership import Effect as AgentEffect
from controlplane.membership import Membership, MembershipConfig, MemberStatus, UserEvent
from controlplane.testing.crowd import (
    BroadcastQueue,
    CrowdConfig,
    CrowdCore,
    Datagram,
    Effect,
    PushPullRefused,
    PushPullTo,
    config_from_args,
    member_address,
    parser,
)
from controlplane.wire.v1 import gossip_pb2 as pb
from controlplane.wire.v1 import membership_pb2

AGENT = ("127.2.0.1", 7000)
PORT = 7946
KEY = bytes(range(32))


def test_member_addresses_skip_network_and_broadcast_octets() -> None:
    assert member_address(1, 0) == "127.1.0.1"
    assert member_address(1, 253) == "127.1.0.254"
    assert member_address(1, 254) == "127.1.1.1"
    assert member_address(3, 4999) == "127.3.19.174"
    with pytest.raises(ValueError, match="block"):
        member_address(0, 1)
    with pytest.raises(ValueError, match="index"):
        member_address(1, 254 * 256)


# ---------------------------------------------------------------------------- broadcast queue


def test_queue_sends_each_message_transmits_times_least_sent_and_newest_first() -> None:
    queue = BroadcastQueue(transmits=2)
    queue.queue(b"a" * 10)
    queue.queue(b"b" * 10)
    # Room for one message per packet: newest first among the least sent.
    room = codec.COMPOUND_OVERHEAD + 10
    taken = [queue.take(room) for _ in range(5)]
    assert taken[:2] == [[b"b" * 10], [b"a" * 10]]
    assert sorted(taken[2] + taken[3]) == [b"a" * 10, b"b" * 10]
    assert taken[4] == []
    assert len(queue) == 0


def test_queue_packs_within_room_and_skips_what_does_not_fit() -> None:
    queue = BroadcastQueue(transmits=1)
    queue.queue(b"s" * 100)
    queue.queue(b"L" * 1000)
    queue.queue(b"m" * 300)
    taken = queue.take(500)
    assert taken == [b"m" * 300, b"s" * 100]
    assert sum(codec.COMPOUND_OVERHEAD + len(m) for m in taken) <= 500
    assert queue.take(500) == []
    assert queue.take(2000) == [b"L" * 1000]


def test_queue_replaces_a_message_with_the_same_key() -> None:
    queue = BroadcastQueue(transmits=3)
    queue.queue(b"old alive", ("core", "n1"))
    queue.queue(b"new alive", ("core", "n1"))
    queue.queue(b"intent", ("serf", "n1"))
    assert len(queue) == 2
    assert sorted(queue.take(1000)) == [b"intent", b"new alive"]


def test_queue_prunes_the_most_sent_beyond_its_depth() -> None:
    queue = BroadcastQueue(transmits=3, max_depth=2)
    queue.queue(b"first")
    queue.take(100)
    queue.queue(b"second")
    queue.queue(b"third")
    assert len(queue) == 2
    assert sorted(queue.take(1000)) == [b"second", b"third"]


# ---------------------------------------------------------------------------- core vs real agent


class Pump:
    """A crowd core and a real agent core joined by a lossless virtual network."""

    def __init__(
        self,
        size: int,
        *,
        keys: tuple[bytes, ...] = (),
        label: str = "",
        agent_keys: tuple[bytes, ...] | None = None,
        **overrides: object,
    ) -> None:
        self.now = 0.0
        config = CrowdConfig(size=size, keys=keys, label=label, seed=3, **overrides)  # type: ignore[arg-type]
        self.crowd = CrowdCore(config, PORT, self.now)
        self.crowd.take_socket_changes()
        agent_keys = keys if agent_keys is None else agent_keys
        self.agent = Membership(
            GossipConfig.lan(),
            MembershipConfig(snapshot_records=False),
            "agent",
            AGENT,
            tags={"role": "server"},
            rng=random.Random(7),
            now=self.now,
            keyring=Keyring(list(agent_keys)) if agent_keys else None,
            label=label,
        )
        self.agent_deaf = False
        self.datagrams: list[Datagram] = []
        self.agent_events: list[AgentEffect] = []

    def index(self, address: tuple[str, int]) -> int | None:
        host, port = address
        if port != PORT or not host.startswith("127.1."):
            return None
        _, _, third, fourth = (int(part) for part in host.split("."))
        return third * 254 + fourth - 1

    def to_crowd(self, effects: Iterable[AgentEffect]) -> None:
        for effect in effects:
            if isinstance(effect, SendPacket):
                index = self.index(effect.dest)
                if index is not None and index < self.crowd.size:
                    self.to_agent(self.crowd.receive(index, AGENT, effect.data, self.now))
            elif isinstance(effect, StartPushPull):
                index = self.index(effect.dest)
                response = None
                if index is not None and self.crowd.members[index].up:
                    try:
                        response = self.crowd.serve_push_pull(effect.request, self.now)
                    except PushPullRefused:
                        response = None
                self.to_crowd(self.agent.push_pull_response(effect.dest, response, self.now))
            else:
                self.agent_events.append(effect)

    def to_agent(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Datagram):
                self.datagrams.append(effect)
                if effect.dest == AGENT and not self.agent_deaf:
                    source = self.crowd.members[effect.source].address
                    self.to_crowd(self.agent.receive_packet(source, effect.data, self.now))
            elif isinstance(effect, PushPullTo) and not self.agent_deaf:
                reply, agent_effects = self.agent.handle_push_pull(
                    self.crowd.members[0].address, effect.frame, self.now
                )
                self.to_crowd(agent_effects)
                self.crowd.merge_push_pull_response(reply, self.now)

    def join(self) -> None:
        self.to_crowd(self.agent.join([self.crowd.members[0].address], self.now))

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 6)
            self.to_agent(self.crowd.tick(self.now))
            if not self.agent_deaf and self.agent.next_deadline() <= self.now:
                self.to_crowd(self.agent.tick(self.now))

    def statuses(self) -> dict[str, MemberStatus]:
        return {m.name: m.status for m in self.agent.members()}


def alive_count(pump: Pump) -> int:
    return sum(1 for status in pump.statuses().values() if status is MemberStatus.ALIVE)


def test_agent_joins_the_whole_crowd_through_one_push_pull() -> None:
    pump = Pump(60)
    pump.join()
    assert alive_count(pump) == 61
    assert pump.crowd.stats.push_pull_joins == 1
    assert "agent" in pump.crowd.externals
    pump.run(20)
    # The agent's join intent reached the crowd, and every probe either way was answered.
    assert pump.crowd.externals["agent"].status_ltime > 0
    assert pump.agent.node.stats.probes_failed == 0
    assert pump.crowd.stats.pings_answered >= 15
    assert pump.crowd.stats.probes_sent >= 10
    assert pump.crowd.stats.probes_answered == pump.crowd.stats.probes_sent
    assert pump.crowd.stats.refutations == 0
    assert alive_count(pump) == 61


def test_failed_members_are_suspected_then_declared_dead_and_the_agent_sees_them_failed() -> None:
    pump = Pump(50, dead_after=(3.0, 4.0))
    pump.join()
    pump.run(2)
    failed = pump.crowd.fail(5, pump.now)
    assert len(failed) == 5
    assert "crowd-00000" not in failed  # the seed never fails
    pump.run(1)
    assert all(pump.statuses()[name] is MemberStatus.ALIVE for name in failed)
    pump.run(8)
    statuses = pump.statuses()
    assert all(statuses[name] is MemberStatus.FAILED for name in failed)
    assert alive_count(pump) == 46
    assert pump.crowd.stats.members_suspected == 5
    assert pump.crowd.stats.members_declared_dead == 5
    assert sorted(pump.crowd.view()["declared_dead"]) == sorted(failed)


def test_grown_members_join_and_leavers_leave() -> None:
    pump = Pump(40)
    pump.join()
    pump.run(1)
    grown = pump.crowd.grow(10)
    assert pump.crowd.take_socket_changes() == [("add", i) for i in range(40, 50)]
    pump.run(5)
    statuses = pump.statuses()
    assert all(statuses[name] is MemberStatus.ALIVE for name in grown)
    left = pump.crowd.leave(4)
    pump.run(5)
    statuses = pump.statuses()
    assert all(statuses[name] is MemberStatus.LEFT for name in left)
    assert alive_count(pump) == 51 - 4


def test_every_datagram_fits_the_udp_buffer_even_during_a_mass_join() -> None:
    pump = Pump(30, keys=(KEY,), label="fleet")
    pump.join()
    pump.crowd.grow(300)
    pump.run(30)
    assert alive_count(pump) == 331
    assert pump.datagrams
    assert max(len(d.data) for d in pump.datagrams) <= GossipConfig.lan().udp_buffer_size
    # Changes were packed several to a packet.
    assert pump.crowd.stats.gossip_packets < 300


def test_encrypted_crowd_refuses_plaintext_and_other_keys() -> None:
    pump = Pump(10, keys=(KEY,), agent_keys=())
    pump.join()
    assert alive_count(pump) == 1
    assert pump.crowd.stats.rejected == {"push_pull_plaintext": 1}
    other = Pump(10, keys=(KEY,), agent_keys=(bytes(16),))
    other.join()
    assert alive_count(other) == 1
    assert other.crowd.stats.rejected == {"push_pull_decrypt": 1}


def test_an_accused_member_that_is_up_refutes_with_a_higher_incarnation() -> None:
    pump = Pump(10)
    pump.join()
    member = pump.crowd.members[3]
    accusation = codec.packet_body([codec.encode_suspect(1, member.name, "agent")])
    pump.crowd.receive(5, AGENT, codec.seal(codec.frame_header("", False), accusation, None), 0)
    assert member.incarnation == 2
    assert pump.crowd.stats.refutations == 1
    pump.run(1)
    assert pump.agent.member(member.name).incarnation == 2
    # The same accusation again is stale: no second refutation.
    pump.crowd.receive(5, AGENT, codec.seal(codec.frame_header("", False), accusation, None), 1)
    assert pump.crowd.stats.refutations == 1


def test_indirect_pings_are_acked_for_up_members_and_nacked_for_failed_ones() -> None:
    pump = Pump(10, probe_agents=False)
    pump.join()
    up, down = pump.crowd.members[2], pump.crowd.members[4]
    pump.crowd.fail_members([down], pump.now, None)
    header = codec.frame_header("", False)

    def ask(target: str, address: tuple[str, int], seq_no: int) -> list[Effect]:
        message = codec.encode_indirect_ping(seq_no, target, address, True, "agent")
        data = codec.seal(header, codec.packet_body([message]), None)
        return pump.crowd.receive(1, AGENT, data, pump.now)

    def kinds(effects: Iterable[Effect]) -> list[tuple[str, int]]:
        found = []
        for effect in effects:
            assert isinstance(effect, Datagram)
            packet = codec.decode_packet(codec.open_frame(effect.data, b"", None))
            message = packet.messages[0]
            kind = str(message.WhichOneof("body"))
            found.append((kind, getattr(message, kind).seq_no))
        return found

    assert kinds(ask(up.name, up.address, 41)) == [("ack", 41)]
    assert kinds(ask(down.name, down.address, 42)) == []
    assert kinds(pump.crowd.tick(pump.now + 1)) == [("nack", 42)]


def test_flapping_members_come_back_with_higher_incarnations() -> None:
    pump = Pump(100, dead_after=(2.0, 3.0))
    pump.join()
    pump.run(1)
    settled = pump.crowd.flap(0.05, 4, pump.now, down=(1.0, 8.0))
    pump.run(settled - pump.now + 3)
    stats = pump.crowd.stats
    assert stats.members_failed >= 10
    assert stats.members_recovered == stats.members_failed
    assert pump.crowd.up_count == 100
    assert alive_count(pump) == 101
    assert any(m.incarnation > 1 for m in pump.crowd.members)


def test_user_events_flow_both_ways() -> None:
    pump = Pump(20)
    pump.join()
    pump.crowd.fire_user_event("deploy", b"v2")
    pump.run(2)
    delivered = [e for e in pump.agent_events if isinstance(e, UserEvent)]
    assert [(e.name, e.payload) for e in delivered] == [("deploy", b"v2")]
    _, effects = pump.agent.fire_user_event("restart", b"", False, pump.now)
    pump.to_crowd(effects)
    pump.run(2)
    assert pump.crowd.stats.user_events_received == 1
    assert pump.crowd.stats.messages_by_kind.get("user:user_event", 0) >= 1


def test_a_silent_agent_is_suspected_declared_dead_and_refutes_when_it_hears() -> None:
    pump = Pump(50)
    pump.join()
    pump.run(3)
    pump.agent_deaf = True
    pump.run(4)

    def status() -> NodeStatus:
        return pump.crowd.externals["agent"].status

    assert status() is NodeStatus.SUSPECT
    assert pump.crowd.stats.agent_suspected == 1
    pump.run(10)
    assert status() is NodeStatus.DEAD
    pump.agent_deaf = False
    pump.run(5)
    assert status() is NodeStatus.ALIVE
    assert pump.crowd.externals["agent"].incarnation > 1
    assert pump.crowd.stats.agent_refutations == 1


def test_the_push_pull_reply_is_cached_until_the_state_changes() -> None:
    pump = Pump(20)
    first = pump.crowd.state_frame()
    assert pump.crowd.state_frame() is first
    state = pb.PushPullState.FromString(codec.open_frame(first, b"", None))
    assert len(state.members) == 20
    assert all(record.status == pb.MEMBER_STATUS_ALIVE for record in state.members)
    serf = membership_pb2.MembershipState.FromString(state.user_state)
    assert sorted(entry.lamport_time for entry in serf.status_times) == list(range(1, 21))
    assert serf.lamport_time == 21
    pump.crowd.leave(1)
    second = pump.crowd.state_frame()
    assert second is not first
    state = pb.PushPullState.FromString(codec.open_frame(second, b"", None))
    assert sum(1 for r in state.members if r.status == pb.MEMBER_STATUS_LEFT) == 1
    assert pump.crowd.stats.push_pull_reply_builds == 2


def test_command_line_builds_the_config() -> None:
    key = base64.b64encode(KEY).decode()
    args = parser().parse_args(
        [
            "--size",
            "250",
            "--encrypt",
            key,
            "--cluster-label",
            "prod",
            "--tag",
            "ring=fleet",
            "--dead-after",
            "4,6",
            "--no-probe",
        ]
    )
    config = config_from_args(args)
    assert config.size == 250
    assert config.keys == (KEY,)
    assert config.label == "prod"
    assert dict(config.tags) == {"ring": "fleet"}
    assert config.dead_after == (4.0, 6.0)
    assert config.suspect_after == (0.5, 2.0)
    assert not config.probe_agents
    assert config.push_pull_agents
    with pytest.raises(SystemExit):
        parser().parse_args(["--size", "5", "--dead-after", "6,4"])
