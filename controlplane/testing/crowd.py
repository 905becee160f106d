"""A crowd: N gossip members played by one process, so one real agent can be judged in a fleet.

The crowd owns everything a fleet of 100 to 5,000 members looks like from one
agent's point of view, over the real wire protocol on loopback:

* every member has its own address, ``127.<block>.x.y`` (default block 1, so
  never the ``127.0.0.x`` other tests use), on one port shared by all: one
  non-blocking UDP socket and one TCP listener each, all on one asyncio loop;
* each member answers pings (ack from its own socket), indirect pings (at once
  for a crowd target that is up, by a real relayed ping otherwise, a nack on
  timeout) and refutes suspect/dead accusations about itself with a higher
  incarnation; a failed member answers nothing, on UDP or TCP;
* the crowd keeps one shared table (name, address, incarnation, status, tags,
  Serf status Lamport time) and behaves toward the agent as the rest of a real
  cluster would: it gossips changes in compound packets of at most 1,400 bytes
  (alive/suspect/dead, Serf join/leave intents, user events, each sent a few
  times) from random members' sockets, probes the agent about once per probe
  interval (one probe per interval is what N members probing round-robin put on
  any one member), suspects it and declares it dead when it stops answering,
  and pushes/pulls its full state with it now and then;
* push-pull (``controlplane.gossip.v1.Gossip/PushPull``) is served for every
  member address by one ``grpc.aio`` server. gRPC cannot tell a handler which
  local address a call reached and cannot unbind one port of a running server,
  so each member's TCP listener is a small splice in front of the server (which
  listens on a unix socket): a failed member's listener is closed and its
  connections reset, so the agent sees "connection refused" as it would from a
  dead process. The reply (every member record plus the Serf ``user_state``) is
  built once per crowd-state version and cached: it is O(N).

Layers, from pure to process:

* :class:`BroadcastQueue` and :class:`CrowdCore`: sans-IO (bytes and ``now``
  in, :class:`Datagram` and :class:`PushPullTo` effects out), unit-tested;
* :class:`Crowd`: the asyncio shell (sockets, splices, gRPC, one tick timer);
* ``python -m controlplane.testing.crowd``: the crowd as a process, driven by
  JSON lines on stdin (one reply line per command on stdout); it stops on
  ``stop``, on end of input or after ``--max-seconds``;
* :class:`CrowdProcess`: the parent's handle on that process (tests, bench).

Scenarios: ``fail(fraction)`` (members stop answering; after a realistic delay
the crowd gossips suspect, then dead, as the rest of the cluster would
conclude), ``grow(k)`` (alive + join intent), ``leave(k)`` (leave intent +
dead-from-self), ``flap(rate_per_s, duration)`` (members fail and come back with
a higher incarnation) and ``fire_user_event(name, payload)``. Counters cover
bytes and packets received from the agent by kind, push-pulls served and
started, probes sent/answered/missed, and refutations the agent provoked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import heapq
import json
import logging
import os
import queue
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from controlplane.api.services import generic_only
from controlplane.gossip import PROFILES, GossipConfig, Keyring, codec
from controlplane.gossip.formulas import push_pull_scale, suspicion_timeout
from controlplane.gossip.state import NodeStatus
from controlplane.membership import messages
from controlplane.membership.buffers import BufferedEvent, EventAdmission, EventBuffer
from controlplane.membership.lamport import LamportClock
from controlplane.membership.tags import encode_tags
from controlplane.shell.looplag import LoopLagProbe
from controlplane.shell.pushpull import CHANNEL_OPTIONS
from controlplane.testing.agents import clean_environment
from controlplane.wire.v1 import gossip_pb2 as pb
from controlplane.wire.v1 import gossip_pb2_grpc, membership_pb2

log = logging.getLogger("controlplane.crowd")

Address = tuple[str, int]

# Hosts per /24 block: .1 to .254, so no member sits on a .0 or .255 address.
HOSTS_PER_BLOCK = 254
MAX_MEMBERS = HOSTS_PER_BLOCK * 256
DEFAULT_TAGS: Mapping[str, str] = {"role": "client", "dc": "dc1"}
# File descriptors the crowd needs beyond two per member (gRPC, pipes, splices).
SPARE_FDS = 512
# Datagrams read per socket wake-up before other sockets and timers get a turn.
MAX_BATCH = 64
MAX_DATAGRAM = 65_535
# Indirect pings relayed at once; beyond this the crowd drops requests, as a real
# member bounds its pending relays.
MAX_RELAYS = 16_384
# Externals (real agents) the crowd tracks; more would mean hostile input.
MAX_EXTERNALS = 64
# A broadcast that does not fit the room left is skipped; after this many skips
# the packet goes out as it is rather than scanning a long queue for small ones.
SKIP_LIMIT = 32
# Probe round-trip times kept for percentiles.
RTT_SAMPLES = 20_000
_PUSH_PULL_USER_STATE = pb.PushPullState.USER_STATE_FIELD_NUMBER
_PUSH_PULL_MEMBERS = pb.PushPullState.MEMBERS_FIELD_NUMBER
_WIRE_STATUS: Mapping[NodeStatus, pb.MemberStatus.ValueType] = {
    NodeStatus.ALIVE: pb.MEMBER_STATUS_ALIVE,
    NodeStatus.SUSPECT: pb.MEMBER_STATUS_SUSPECT,
    NodeStatus.DEAD: pb.MEMBER_STATUS_DEAD,
    NodeStatus.LEFT: pb.MEMBER_STATUS_LEFT,
}
_SEQ_MASK = 0xFFFFFFFF
_INCARNATION_MAX = 0xFFFFFFFF


def member_address(block: int, index: int) -> str:
    """Loopback address of member ``index``: 127.<block>.<index // 254>.<index % 254 + 1>."""
    if not 0 <= index < MAX_MEMBERS:
        raise ValueError(f"member index must be 0 to {MAX_MEMBERS - 1}, got {index}")
    if not 1 <= block <= 255:
        raise ValueError(f"block must be 1 to 255 (127.0.x.y belongs to other tests), got {block}")
    third, fourth = divmod(index, HOSTS_PER_BLOCK)
    return f"127.{block}.{third}.{fourth + 1}"


def member_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}"


# The agent's own encoders: the crowd's states are assembled the same way.
_field = codec.length_delimited_field
_status_time_field = messages.status_time_field


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class CrowdConfig:
    """How the crowd looks and behaves; timings follow the agent's profile."""

    size: int
    profile: str = "lan"
    # Members live in 127.<block>.0.0/16.
    block: int = 1
    # Port every member uses for UDP and TCP; 0 picks a free one.
    port: int = 0
    name_prefix: str = "crowd"
    tags: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TAGS))
    # Gossip keys (primary first) and label, as the agent's --encrypt / --cluster-label.
    keys: tuple[bytes, ...] = ()
    label: str = ""
    seed: int = 1
    # Times each change is sent to each agent ("a few"; a real cluster delivers up to
    # RetransmitMult * ceil(log10(N + 1)) copies, push-pull repairs the rest).
    transmits: int = 3
    # Probe the agent (about one probe per probe interval, as in a real cluster).
    probe_agents: bool = True
    # Suspect an agent that misses a probe and declare it dead after the suspicion
    # timeout, as the rest of a real cluster would.
    suspect_agents: bool = True
    # Start push-pulls with the agent (about one per scaled push-pull interval).
    push_pull_agents: bool = True
    # Seconds from a member's failure to the crowd's suspect broadcast, and from
    # there to its dead broadcast (None: the suspicion timeout for N, times 1 to 1.5).
    suspect_after: tuple[float, float] = (0.5, 2.0)
    dead_after: tuple[float, float] | None = None
    # The crowd's timer period: every due transition, gossip and probe runs on it.
    tick_interval: float = 0.05

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_MEMBERS:
            raise ValueError(f"size must be 1 to {MAX_MEMBERS}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}")
        if self.transmits < 1:
            raise ValueError("transmits must be at least 1")
        member_address(self.block, 0)

    @property
    def gossip(self) -> GossipConfig:
        # Strict: a bug in the crowd's message handling fails the crowd (and the test
        # driving it) instead of being logged and counted (GossipConfig.strict).
        return PROFILES[self.profile](strict=True)


# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Datagram:
    """Send ``data`` from member ``source``'s socket to ``dest``."""

    source: int
    dest: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class PushPullTo:
    """Start a push-pull with the agent at ``dest`` carrying ``frame``."""

    dest: Address
    frame: bytes


Effect = Datagram | PushPullTo


class PushPullRefused(Exception):
    """A push-pull frame the crowd refuses (wrong key or label, garbage); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------- broadcast queue


@dataclass(slots=True, eq=False)
class _Broadcast:
    key: object | None
    message: bytes
    live: bool = True


class BroadcastQueue:
    """Transmit-limited broadcasts toward one destination (memberlist queue.go order).

    Each message goes out ``transmits`` times; the least-sent go first and, among
    equals, the newest. A message queued under a key replaces the queued message
    with the same key (a newer alive about a node invalidates the older one).
    """

    def __init__(self, transmits: int, max_depth: int = 65_536) -> None:
        self.transmits = transmits
        self.max_depth = max_depth
        # _levels[n]: broadcasts sent n times, oldest first.
        self._levels: list[list[_Broadcast]] = [[] for _ in range(transmits)]
        self._by_key: dict[object, _Broadcast] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def queue(self, message: bytes, key: object | None = None) -> None:
        if key is not None:
            old = self._by_key.get(key)
            if old is not None and old.live:
                old.live = False
                self._live -= 1
        entry = _Broadcast(key, message)
        if key is not None:
            self._by_key[key] = entry
        self._levels[0].append(entry)
        self._live += 1
        if self._live > self.max_depth:
            self._prune()

    def _retire(self, entry: _Broadcast) -> None:
        if entry.live:
            entry.live = False
            self._live -= 1
        if entry.key is not None and self._by_key.get(entry.key) is entry:
            del self._by_key[entry.key]

    def _prune(self) -> None:
        # The most-sent, oldest broadcasts go first: they have done most of their work.
        for entries in reversed(self._levels):
            while entries and self._live > self.max_depth:
                self._retire(entries.pop(0))
            if self._live <= self.max_depth:
                return

    def take(self, room: int, overhead: int = codec.COMPOUND_OVERHEAD) -> list[bytes]:
        """Messages filling at most ``room`` bytes (``overhead`` counted per message);
        each taken message counts one transmission."""
        out: list[bytes] = []
        taken: list[tuple[int, _Broadcast]] = []
        for level, entries in enumerate(self._levels):
            skipped: list[_Broadcast] = []
            while entries and room > overhead and len(skipped) < SKIP_LIMIT:
                entry = entries.pop()
                if not entry.live:
                    continue
                size = overhead + len(entry.message)
                if size > room:
                    skipped.append(entry)
                    continue
                room -= size
                out.append(entry.message)
                taken.append((level + 1, entry))
            entries.extend(reversed(skipped))
            if room <= overhead:
                break
        # Promoted after the scan, so one packet never carries a message twice.
        for level, entry in taken:
            if level >= self.transmits:
                self._retire(entry)
            else:
                self._levels[level].append(entry)
        return out


# ---------------------------------------------------------------------------- the table


@dataclass(slots=True, eq=False)
class CrowdMember:
    """One member of the crowd: the cluster's view of it and whether its process is up."""

    index: int
    name: str
    address: Address
    meta: bytes
    incarnation: int = 1
    # What the rest of the cluster concluded about it.
    status: NodeStatus = NodeStatus.ALIVE
    # Whether it answers (a failed or departed member does not).
    up: bool = True
    # Lamport time of its last join or leave intent (Serf statusLTime).
    status_ltime: int = 0
    # Bumped on every up/down change: scheduled transitions of an older generation are void.
    generation: int = 0
    record: tuple[tuple[int, int], bytes] | None = None
    ltime_field: tuple[int, bytes] | None = None


@dataclass(slots=True, eq=False)
class External:
    """A member the crowd did not create: the agent (or agents) under test."""

    name: str
    address: Address
    meta: bytes
    incarnation: int
    status: NodeStatus
    changed: float
    queue: BroadcastQueue
    next_probe: float
    next_push_pull: float
    status_ltime: int = 0
    suspicion_deadline: float | None = None
    joined_at: float | None = None


@dataclass(slots=True)
class _Probe:
    target: str
    prober: int
    sent: float


@dataclass(slots=True)
class _Relay:
    source: int
    requester: Address
    requester_seq_no: int
    nack: bool


@dataclass
class CrowdStats:
    """Counters of the crowd; every field is cumulative since start."""

    udp_packets_from_agents: int = 0
    udp_bytes_from_agents: int = 0
    udp_packets_from_others: int = 0
    udp_bytes_from_others: int = 0
    udp_packets_to_agents: int = 0
    udp_bytes_to_agents: int = 0
    # Packets by the kind of their first message; message bytes by message kind
    # (user messages by their Serf kind, e.g. "user:join_intent").
    packets_by_kind: dict[str, int] = field(default_factory=dict)
    message_bytes_by_kind: dict[str, int] = field(default_factory=dict)
    messages_by_kind: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    dropped_while_down: int = 0
    pings_answered: int = 0
    indirect_acked: int = 0
    indirect_relayed: int = 0
    indirect_nacked: int = 0
    # Our probes of the agents: sent, answered (any time before the probe interval
    # ends), answered after the probe timeout, missed altogether.
    probes_sent: int = 0
    probes_answered: int = 0
    probes_late: int = 0
    probes_missed: int = 0
    acks_unmatched: int = 0
    # Accusations of members that were up: the agent suspected or declared dead a
    # member that answers (its own lateness, or the crowd's).
    refutations: int = 0
    accusations_by_kind: dict[str, int] = field(default_factory=dict)
    agent_suspected: int = 0
    agent_declared_dead: int = 0
    agent_refutations: int = 0
    gossip_packets: int = 0
    push_pulls_served: int = 0
    push_pull_joins: int = 0
    push_pull_request_bytes: int = 0
    push_pulls_started: int = 0
    push_pulls_failed: int = 0
    push_pull_response_bytes: int = 0
    push_pull_reply_builds: int = 0
    user_events_received: int = 0
    members_suspected: int = 0
    members_declared_dead: int = 0
    members_recovered: int = 0
    members_added: int = 0
    members_left: int = 0
    members_failed: int = 0

    def count(self, table: dict[str, int], key: str, amount: int = 1) -> None:
        table[key] = table.get(key, 0) + amount

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---------------------------------------------------------------------------- the core


class CrowdCore:
    """The crowd's protocol logic: sans-IO, one ``now`` per call, effects out.

    The shell feeds datagrams to :meth:`receive`, push-pull frames to
    :meth:`serve_push_pull` / :meth:`merge_push_pull_response`, calls :meth:`tick`
    every ``tick_interval``, carries out the returned effects, and applies
    :meth:`take_socket_changes` (members added, gone down, come back up).
    """

    def __init__(self, config: CrowdConfig, port: int, now: float) -> None:
        self.config = config
        self.port = port
        self.gossip = config.gossip
        self.stats = CrowdStats()
        self._rng = random.Random(config.seed)
        self._keyring = Keyring(list(config.keys)) if config.keys else None
        self._label = config.label.encode()
        self._header = codec.frame_header(config.label, self._keyring is not None)
        self._room = (
            self.gossip.udp_buffer_size
            - codec.frame_overhead(config.label, self._keyring is not None)
            - codec.PACKET_HEADER_SIZE
        )
        self._meta = encode_tags(config.tags)
        self.members: list[CrowdMember] = []
        self._by_name: dict[str, CrowdMember] = {}
        self.externals: dict[str, External] = {}
        self._by_address: dict[Address, External] = {}
        self._up = 0
        self._clock = LamportClock(1)
        self._event_clock = LamportClock(1)
        self._events = EventBuffer(512)
        self._seq_no = 0
        self._probes: dict[int, _Probe] = {}
        self._relays: dict[int, _Relay] = {}
        self._timeouts: list[tuple[float, int]] = []
        # (at, counter, action, member index, generation)
        self._schedule: list[tuple[float, int, str, int, int]] = []
        self._counter = 0
        self._socket_changes: list[tuple[str, int]] = []
        self._version = 0
        self._frame: bytes | None = None
        self._frame_version = -1
        self._next_gossip = now
        self._flap_until = 0.0
        self._flap_rate = 0.0
        self._flap_down = (1.0, 5.0)
        self._flap_credit = 0.0
        self._last_tick = now
        self.rtts: deque[float] = deque(maxlen=RTT_SAMPLES)
        for _ in range(config.size):
            member = self._new_member()
            member.status_ltime = self._clock.time()
            self._clock.increment()
        self._socket_changes.clear()

    # ------------------------------------------------------------------ queries

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def up_count(self) -> int:
        return self._up

    @property
    def version(self) -> int:
        return self._version

    def member(self, name: str) -> CrowdMember | None:
        return self._by_name.get(name)

    def view(self) -> dict[str, list[str]]:
        """Member names by what the agent should end up seeing: alive (up), failed
        (down, not left), left; plus which of the failed the crowd has declared dead."""
        out: dict[str, list[str]] = {"alive": [], "failed": [], "left": [], "declared_dead": []}
        for member in self.members:
            if member.status is NodeStatus.LEFT:
                out["left"].append(member.name)
            elif member.up:
                out["alive"].append(member.name)
            else:
                out["failed"].append(member.name)
                if member.status is NodeStatus.DEAD:
                    out["declared_dead"].append(member.name)
        return out

    def take_socket_changes(self) -> list[tuple[str, int]]:
        """("add" | "down" | "up", member index) since the last call, in order."""
        changes, self._socket_changes = self._socket_changes, []
        return changes

    # ------------------------------------------------------------------ helpers

    def _changed(self) -> None:
        self._version += 1

    def _next_seq_no(self) -> int:
        self._seq_no = (self._seq_no + 1) & _SEQ_MASK
        return self._seq_no

    def _push_schedule(self, at: float, action: str, member: CrowdMember) -> None:
        self._counter += 1
        heapq.heappush(self._schedule, (at, self._counter, action, member.index, member.generation))

    def _new_member(self) -> CrowdMember:
        index = len(self.members)
        name = member_name(self.config.name_prefix, index)
        address = (member_address(self.config.block, index), self.port)
        member = CrowdMember(index, name, address, self._meta)
        self.members.append(member)
        self._by_name[name] = member
        self._up += 1
        self._socket_changes.append(("add", index))
        self._changed()
        return member

    def _random_up_member(self, exclude: int = -1) -> CrowdMember | None:
        members = self.members
        for _ in range(64):
            member = members[self._rng.randrange(len(members))]
            if member.up and member.status is NodeStatus.ALIVE and member.index != exclude:
                return member
        candidates = [m for m in members if m.up and m.index != exclude]
        return self._rng.choice(candidates) if candidates else None

    def _broadcast(self, message: bytes, key: object | None) -> None:
        for external in self.externals.values():
            external.queue.queue(message, key)

    def _broadcast_alive(self, member: CrowdMember) -> None:
        self._broadcast(
            codec.encode_alive(member.incarnation, member.name, member.address, member.meta),
            ("core", member.name),
        )

    def _send(self, source: int, dest: Address, msgs: list[bytes], out: list[Effect]) -> None:
        """Send ``msgs`` with as many of the destination's broadcasts as fit (piggyback)."""
        external = self._by_address.get(dest)
        if external is not None and external.queue:
            room = self._room
            for message in msgs:
                room -= codec.COMPOUND_OVERHEAD + len(message)
            if room > codec.COMPOUND_OVERHEAD:
                msgs = msgs + external.queue.take(room)
        self._emit(source, dest, msgs, out)

    def _emit(self, source: int, dest: Address, msgs: list[bytes], out: list[Effect]) -> None:
        data = codec.seal(self._header, codec.packet_body(msgs), self._keyring)
        if dest in self._by_address:
            self.stats.udp_packets_to_agents += 1
            self.stats.udp_bytes_to_agents += len(data)
        out.append(Datagram(source, dest, data))

    # ------------------------------------------------------------------ datagrams

    def receive(self, index: int, src: Address, data: bytes, now: float) -> list[Effect]:
        """One datagram that reached member ``index``'s socket from ``src``."""
        out: list[Effect] = []
        stats = self.stats
        if src in self._by_address:
            stats.udp_packets_from_agents += 1
            stats.udp_bytes_from_agents += len(data)
        else:
            stats.udp_packets_from_others += 1
            stats.udp_bytes_from_others += len(data)
        member = self.members[index]
        if not member.up:
            stats.dropped_while_down += 1
            return out
        if len(data) > self.gossip.max_packet_size:
            stats.count(stats.rejected, "oversized")
            return out
        try:
            packet = codec.decode_packet(codec.open_frame(data, self._label, self._keyring))
        except codec.FrameError as error:
            stats.count(stats.rejected, error.reason)
            return out
        first = True
        for message in packet.messages:
            try:
                kind = self._dispatch(member, src, message, now, out)
            except Exception:
                # Only a bug gets here (bad input is refused by codec.parse and the
                # handlers' checks); strict (always, in a crowd) makes it fail loudly.
                if self.gossip.strict:
                    raise
                log.exception("message from %s failed", src)
                kind = "internal_error"
            if first:
                stats.count(stats.packets_by_kind, kind)
                first = False
            stats.count(stats.messages_by_kind, kind)
            stats.count(stats.message_bytes_by_kind, kind, message.ByteSize())
        return out

    def _dispatch(
        self, member: CrowdMember, src: Address, message: pb.Message, now: float, out: list[Effect]
    ) -> str:
        kind = message.WhichOneof("body")
        if kind == "ping":
            ping = message.ping
            if ping.target and ping.target != member.name:
                # The address belongs to someone else now: a real member drops it.
                self.stats.count(self.stats.rejected, "wrong_target")
                return kind
            self.stats.pings_answered += 1
            self._send(member.index, src, [codec.encode_ack(ping.seq_no)], out)
        elif kind == "indirect_ping":
            self._on_indirect_ping(member, src, message.indirect_ping, now, out)
        elif kind == "ack":
            self._on_ack(message.ack.seq_no, now, out)
        elif kind == "alive":
            self._on_alive(message.alive, now)
        elif kind == "suspect":
            suspect = message.suspect
            self._on_accusation(suspect.node, suspect.incarnation, suspect.from_node, False, now)
        elif kind == "dead":
            dead = message.dead
            self._on_accusation(dead.node, dead.incarnation, dead.from_node, True, now)
        elif kind == "user":
            return "user:" + self._on_user(message.user.payload, now)
        elif kind != "nack":
            # Nacks answer indirect probes, which the crowd does not send.
            return "unknown"
        return kind

    def _on_indirect_ping(
        self,
        member: CrowdMember,
        src: Address,
        request: pb.IndirectPing,
        now: float,
        out: list[Effect],
    ) -> None:
        target = self._by_name.get(request.target)
        if target is not None:
            if target.up:
                # A real relay would ping the target and forward its ack; on loopback
                # that takes microseconds, so the crowd answers on the target's behalf.
                self.stats.indirect_acked += 1
                self._send(member.index, src, [codec.encode_ack(request.seq_no)], out)
            elif request.nack:
                self._arm_relay(_Relay(member.index, src, request.seq_no, True), now)
            return
        address = codec.decode_address(request.target_address)
        if not request.target or address is None or len(self._relays) >= MAX_RELAYS:
            self.stats.count(self.stats.rejected, "indirect_ping")
            return
        seq_no = self._arm_relay(_Relay(member.index, src, request.seq_no, request.nack), now)
        self.stats.indirect_relayed += 1
        self._send(
            member.index, address, [codec.encode_ping(seq_no, request.target, member.name)], out
        )

    def _arm_relay(self, relay: _Relay, now: float) -> int:
        seq_no = self._next_seq_no()
        self._relays[seq_no] = relay
        heapq.heappush(self._timeouts, (now + self.gossip.probe_timeout, seq_no))
        return seq_no

    def _on_ack(self, seq_no: int, now: float, out: list[Effect]) -> None:
        relay = self._relays.pop(seq_no, None)
        if relay is not None:
            self._send(
                relay.source, relay.requester, [codec.encode_ack(relay.requester_seq_no)], out
            )
            return
        probe = self._probes.pop(seq_no, None)
        if probe is None:
            self.stats.acks_unmatched += 1
            return
        rtt = now - probe.sent
        self.rtts.append(rtt)
        self.stats.probes_answered += 1
        if rtt > self.gossip.probe_timeout:
            self.stats.probes_late += 1

    def _on_alive(self, alive: pb.Alive, now: float) -> None:
        if alive.node in self._by_name:
            # The agent re-gossips what it learned about crowd members; only a
            # member itself changes its record.
            return
        address = codec.decode_address(alive.address)
        if address is None or not alive.node or alive.incarnation == 0:
            self.stats.count(self.stats.rejected, "invalid_alive")
            return
        self._learn_external(
            alive.node, address, alive.meta, alive.incarnation, NodeStatus.ALIVE, now
        )

    def _on_accusation(
        self, node: str, incarnation: int, accuser: str, dead: bool, now: float
    ) -> None:
        member = self._by_name.get(node)
        if member is not None:
            self._accused(member, incarnation, "dead" if dead else "suspect", now)
            return
        external = self.externals.get(node)
        if (
            external is not None
            and dead
            and accuser == node
            and incarnation >= external.incarnation
            and external.status is not NodeStatus.LEFT
        ):
            # The agent's graceful leave: a dead message from itself.
            external.status = NodeStatus.LEFT
            external.changed = now
            external.suspicion_deadline = None
            self._changed()

    def _accused(self, member: CrowdMember, incarnation: int, kind: str, now: float) -> None:
        """The agent suspects (or declared dead) a crowd member: refute if it is up."""
        if not member.up or member.status is not NodeStatus.ALIVE:
            return
        if incarnation < member.incarnation:
            return  # already refuted
        member.incarnation = min(incarnation + 1, _INCARNATION_MAX)
        self.stats.refutations += 1
        self.stats.count(self.stats.accusations_by_kind, kind)
        self._broadcast_alive(member)
        self._changed()

    def _on_user(self, payload: bytes, now: float) -> str:
        message = messages.decode_message(payload)
        if message is None:
            self.stats.count(self.stats.rejected, "user_decode")
            return "invalid"
        kind = message.WhichOneof("body")
        if kind == "join_intent" or kind == "leave_intent":
            intent = message.join_intent if kind == "join_intent" else message.leave_intent
            self._clock.witness(intent.lamport_time)
            external = self.externals.get(intent.node)
            if external is not None and intent.lamport_time > external.status_ltime:
                external.status_ltime = intent.lamport_time
                self._changed()
        elif kind == "user_event":
            self._admit_event(message.user_event)
        return kind or "empty"

    def _admit_event(self, event: membership_pb2.UserEventMessage) -> None:
        self._event_clock.witness(event.lamport_time)
        buffered = messages.buffered(event)
        admission = self._events.admit(buffered, self._event_clock.time())
        if admission is EventAdmission.NEW:
            self.stats.user_events_received += 1
            self._changed()

    def _learn_external(
        self,
        name: str,
        address: Address,
        meta: bytes,
        incarnation: int,
        status: NodeStatus,
        now: float,
    ) -> None:
        external = self.externals.get(name)
        if external is None:
            if status not in (NodeStatus.ALIVE, NodeStatus.SUSPECT) or incarnation == 0:
                return
            if len(self.externals) >= MAX_EXTERNALS or address in self._by_address:
                return
            interval = self.gossip.probe_interval
            external = External(
                name=name,
                address=address,
                meta=meta,
                incarnation=incarnation,
                status=NodeStatus.ALIVE,
                changed=now,
                queue=BroadcastQueue(self.config.transmits),
                next_probe=now + self._rng.random() * interval,
                next_push_pull=now + self._rng.expovariate(1.0 / self._push_pull_interval()),
            )
            self.externals[name] = external
            self._by_address[address] = external
            log.info("agent %s at %s:%d joined the crowd", name, address[0], address[1])
            self._changed()
            return
        if status in (NodeStatus.ALIVE, NodeStatus.SUSPECT):
            if incarnation <= external.incarnation:
                return
            if external.status is not NodeStatus.ALIVE:
                self.stats.agent_refutations += 1
            if external.address != address:
                self._by_address.pop(external.address, None)
                self._by_address[address] = external
                external.address = address
            external.incarnation = incarnation
            external.meta = meta
            external.status = NodeStatus.ALIVE
            external.changed = now
            external.suspicion_deadline = None
            self._changed()
        elif (
            status is NodeStatus.LEFT
            and incarnation >= external.incarnation
            and external.status is not NodeStatus.LEFT
        ):
            external.status = NodeStatus.LEFT
            external.changed = now
            external.suspicion_deadline = None
            self._changed()

    # ------------------------------------------------------------------ push-pull

    def _push_pull_interval(self) -> float:
        return push_pull_scale(self.gossip.push_pull_interval, max(self._up, 1))

    def _open_state(self, frame: bytes) -> pb.PushPullState:
        if len(frame) > self.gossip.max_push_pull_size:
            raise PushPullRefused("oversized")
        try:
            body = codec.open_frame(frame, self._label, self._keyring)
        except codec.FrameError as error:
            raise PushPullRefused(error.reason) from None
        state = codec.parse(pb.PushPullState, body)
        if state is None:
            raise PushPullRefused("decode")
        if state.protocol_version != codec.PROTOCOL_VERSION:
            raise PushPullRefused("protocol_version")
        return state

    def serve_push_pull(self, frame: bytes, now: float) -> bytes:
        """The agent's push-pull request to any member: merge it, answer with the crowd's
        state. Raises PushPullRefused (counted) for a frame a real member would refuse."""
        try:
            state = self._open_state(frame)
        except PushPullRefused as error:
            self.stats.count(self.stats.rejected, "push_pull_" + error.reason)
            raise
        self.stats.push_pulls_served += 1
        self.stats.push_pull_request_bytes += len(frame)
        if state.join:
            self.stats.push_pull_joins += 1
        self._merge_state(state, now, joining=state.join)
        return self.state_frame()

    def merge_push_pull_response(self, frame: bytes, now: float) -> None:
        """The agent's answer to a push-pull the crowd started."""
        self.stats.push_pull_response_bytes += len(frame)
        try:
            state = self._open_state(frame)
        except PushPullRefused as error:
            self.stats.push_pulls_failed += 1
            self.stats.count(self.stats.rejected, "push_pull_" + error.reason)
            return
        self._merge_state(state, now, joining=False)

    def push_pull_failed(self) -> None:
        self.stats.push_pulls_failed += 1

    def _merge_state(self, state: pb.PushPullState, now: float, joining: bool) -> None:
        by_name = self._by_name
        alive = pb.MEMBER_STATUS_ALIVE
        for record in state.members:
            member = by_name.get(record.name)
            if member is not None:
                status = record.status
                if status == alive:
                    continue
                if status == pb.MEMBER_STATUS_SUSPECT:
                    self._accused(member, record.incarnation, "push_pull_suspect", now)
                elif status == pb.MEMBER_STATUS_DEAD:
                    self._accused(member, record.incarnation, "push_pull_dead", now)
                continue
            if record.status not in (
                pb.MEMBER_STATUS_ALIVE,
                pb.MEMBER_STATUS_SUSPECT,
                pb.MEMBER_STATUS_LEFT,
            ):
                continue
            address = codec.decode_address(record.address)
            if address is None or not record.name:
                continue
            known = record.name in self.externals
            self._learn_external(
                record.name,
                address,
                record.meta,
                record.incarnation,
                NodeStatus(record.status),
                now,
            )
            external = self.externals.get(record.name)
            if joining and not known and external is not None:
                external.joined_at = now
        if state.user_state:
            self._merge_user_state(state.user_state)

    def _merge_user_state(self, data: bytes) -> None:
        state = messages.decode_state(data)
        if state is None:
            self.stats.count(self.stats.rejected, "user_state")
            return
        if state.lamport_time > 0:
            self._clock.witness(state.lamport_time - 1)
        if state.event_lamport_time > 0:
            self._event_clock.witness(state.event_lamport_time - 1)
        externals = self.externals
        if externals:
            for record in state.status_times:
                external = externals.get(record.node)
                if external is not None and record.lamport_time > external.status_ltime:
                    external.status_ltime = record.lamport_time
                    self._changed()
        for event in state.recent_events:
            if event.name:
                self._admit_event(event)

    def state_frame(self) -> bytes:
        """The crowd's framed PushPullState: every member and agent, and the Serf state.
        Built once per state version (it is O(N)) and reused until something changes."""
        if self._frame is None or self._frame_version != self._version:
            self._frame = self._build_state()
            self._frame_version = self._version
            self.stats.push_pull_reply_builds += 1
        return self._frame

    def _member_field(self, member: CrowdMember) -> bytes:
        key = (member.incarnation, int(member.status))
        cached = member.record
        if cached is not None and cached[0] == key:
            return cached[1]
        record = pb.MemberState(
            name=member.name,
            address=pb.Address(host=member.address[0], port=member.address[1]),
            meta=member.meta,
            incarnation=member.incarnation,
            status=_WIRE_STATUS[member.status],
        ).SerializeToString()
        encoded = _field(_PUSH_PULL_MEMBERS, record)
        member.record = (key, encoded)
        return encoded

    def _ltime_field(self, member: CrowdMember) -> bytes:
        cached = member.ltime_field
        if cached is not None and cached[0] == member.status_ltime:
            return cached[1]
        encoded = _status_time_field(member.name, member.status_ltime)
        member.ltime_field = (member.status_ltime, encoded)
        return encoded

    def _build_state(self) -> bytes:
        # Protobuf fields concatenate, so the state is the header plus each member's
        # cached record: thousands of members cost one join, not thousands of builds.
        parts = [pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION).SerializeToString()]
        parts.extend(self._member_field(member) for member in self.members)
        for external in self.externals.values():
            record = pb.MemberState(
                name=external.name,
                address=pb.Address(host=external.address[0], port=external.address[1]),
                meta=external.meta,
                incarnation=external.incarnation,
                status=_WIRE_STATUS[external.status],
            ).SerializeToString()
            parts.append(_field(_PUSH_PULL_MEMBERS, record))
        left = [m.name for m in self.members if m.status is NodeStatus.LEFT]
        left.extend(e.name for e in self.externals.values() if e.status is NodeStatus.LEFT)
        user_state = [
            messages.encode_state(
                self._clock.time(), {}, left, self._event_clock.time(), self._events.events()
            )
        ]
        user_state.extend(self._ltime_field(member) for member in self.members)
        user_state.extend(
            _status_time_field(e.name, e.status_ltime) for e in self.externals.values()
        )
        parts.append(_field(_PUSH_PULL_USER_STATE, b"".join(user_state)))
        return codec.seal(self._header, b"".join(parts), self._keyring)

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> list[Effect]:
        """Run everything due at ``now``: member transitions, flapping, timeouts,
        suspicions of agents, probes, gossip and push-pulls."""
        out: list[Effect] = []
        self._run_schedule(now)
        self._flap(now)
        self._expire_timeouts(now, out)
        for external in self.externals.values():
            self._tick_external(external, now, out)
        if now >= self._next_gossip:
            self._gossip(now, out)
            interval = self.gossip.gossip_interval
            self._next_gossip = max(self._next_gossip + interval, now + interval / 2)
        self._last_tick = now
        return out

    def _run_schedule(self, now: float) -> None:
        schedule = self._schedule
        while schedule and schedule[0][0] <= now:
            _at, _counter, action, index, generation = heapq.heappop(schedule)
            member = self.members[index]
            if member.generation != generation:
                continue
            if action == "suspect":
                if not member.up and member.status is NodeStatus.ALIVE:
                    self._declare(member, NodeStatus.SUSPECT)
            elif action == "dead":
                if not member.up and member.status in (NodeStatus.ALIVE, NodeStatus.SUSPECT):
                    self._declare(member, NodeStatus.DEAD)
            elif action == "recover" and not member.up:
                self._recover(member)

    def _declare(self, member: CrowdMember, status: NodeStatus) -> None:
        accuser = self._random_up_member(exclude=member.index)
        accuser_name = accuser.name if accuser is not None else member.name
        member.status = status
        if status is NodeStatus.SUSPECT:
            self.stats.members_suspected += 1
            message = codec.encode_suspect(member.incarnation, member.name, accuser_name)
        else:
            self.stats.members_declared_dead += 1
            message = codec.encode_dead(member.incarnation, member.name, accuser_name)
        self._broadcast(message, ("core", member.name))
        self._changed()

    def _expire_timeouts(self, now: float, out: list[Effect]) -> None:
        timeouts = self._timeouts
        while timeouts and timeouts[0][0] <= now:
            _at, seq_no = heapq.heappop(timeouts)
            relay = self._relays.pop(seq_no, None)
            if relay is not None:
                if relay.nack:
                    self.stats.indirect_nacked += 1
                    self._send(
                        relay.source,
                        relay.requester,
                        [codec.encode_nack(relay.requester_seq_no)],
                        out,
                    )
                continue
            probe = self._probes.pop(seq_no, None)
            if probe is not None:
                self.stats.probes_missed += 1
                self._agent_missed(probe, now)

    def _agent_missed(self, probe: _Probe, now: float) -> None:
        external = self.externals.get(probe.target)
        if (
            external is None
            or not self.config.suspect_agents
            or external.status is not NodeStatus.ALIVE
        ):
            return
        # The probe interval covered the direct and the indirect probes: the rest of a
        # real cluster would now suspect the agent, and confirmations from other
        # members' probes would bring the suspicion down to its minimum timeout.
        external.status = NodeStatus.SUSPECT
        external.changed = now
        external.suspicion_deadline = now + suspicion_timeout(
            self.gossip.suspicion_mult, max(self._up, 1), self.gossip.probe_interval
        )
        prober = self.members[probe.prober]
        self._broadcast(
            codec.encode_suspect(external.incarnation, external.name, prober.name),
            ("core", external.name),
        )
        self.stats.agent_suspected += 1
        self._changed()

    def _tick_external(self, external: External, now: float, out: list[Effect]) -> None:
        if (
            external.status is NodeStatus.SUSPECT
            and external.suspicion_deadline is not None
            and now >= external.suspicion_deadline
        ):
            external.status = NodeStatus.DEAD
            external.changed = now
            external.suspicion_deadline = None
            accuser = self._random_up_member()
            self._broadcast(
                codec.encode_dead(
                    external.incarnation, external.name, accuser.name if accuser else ""
                ),
                ("core", external.name),
            )
            self.stats.agent_declared_dead += 1
            self._changed()
        reachable = external.status in (NodeStatus.ALIVE, NodeStatus.SUSPECT)
        interval = self.gossip.probe_interval
        if self.config.probe_agents and reachable and now >= external.next_probe:
            # Probes from N members at random phases arrive about as a Poisson stream.
            external.next_probe = max(now, external.next_probe) + self._rng.expovariate(
                1.0 / interval
            )
            external.next_probe = max(external.next_probe, now + self.config.tick_interval)
            self._probe(external, now, out)
        if (
            self.config.push_pull_agents
            and external.status is NodeStatus.ALIVE
            and now >= external.next_push_pull
        ):
            external.next_push_pull = now + self._rng.expovariate(1.0 / self._push_pull_interval())
            self.stats.push_pulls_started += 1
            out.append(PushPullTo(external.address, self.state_frame()))

    def _probe(self, external: External, now: float, out: list[Effect]) -> None:
        prober = self._random_up_member()
        if prober is None:
            return
        seq_no = self._next_seq_no()
        self._probes[seq_no] = _Probe(external.name, prober.index, now)
        heapq.heappush(self._timeouts, (now + self.gossip.probe_interval, seq_no))
        msgs = [codec.encode_ping(seq_no, external.name, prober.name)]
        if external.status is NodeStatus.SUSPECT:
            # Lifeguard buddy system: tell a suspect directly so it can refute at once.
            msgs.append(codec.encode_suspect(external.incarnation, external.name, prober.name))
        self.stats.probes_sent += 1
        self._send(prober.index, external.address, msgs, out)

    def _gossip(self, now: float, out: list[Effect]) -> None:
        horizon = self.gossip.gossip_to_the_dead_time
        for external in self.externals.values():
            if external.status is NodeStatus.LEFT:
                continue
            if external.status is NodeStatus.DEAD and now - external.changed > horizon:
                continue
            # N members gossiping to GossipNodes random members each put about
            # GossipNodes packets per interval on any one member.
            for _ in range(self.gossip.gossip_nodes):
                if not external.queue:
                    break
                sender = self._random_up_member()
                if sender is None:
                    return
                msgs = external.queue.take(self._room)
                if not msgs:
                    break
                self.stats.gossip_packets += 1
                self._emit(sender.index, external.address, msgs, out)

    # ------------------------------------------------------------------ scenarios

    def _pick(self, count: int) -> list[CrowdMember]:
        """Up to ``count`` distinct random members that are up and alive. Member 0 is
        the agent's seed and stays up, so a re-join always has a door."""
        members = self.members
        if count <= 0:
            return []
        if count * 8 < self._up:
            # Few among many (flapping picks a handful per tick): sample by rejection
            # rather than listing every member.
            picked: dict[int, CrowdMember] = {}
            for _ in range(count * 16):
                member = members[self._rng.randrange(len(members))]
                if member.up and member.status is NodeStatus.ALIVE and member.index != 0:
                    picked[member.index] = member
                    if len(picked) == count:
                        return list(picked.values())
        candidates = [m for m in members if m.up and m.status is NodeStatus.ALIVE and m.index != 0]
        return self._rng.sample(candidates, min(count, len(candidates)))

    def _dead_delay(self) -> float:
        if self.config.dead_after is not None:
            return self._rng.uniform(*self.config.dead_after)
        minimum = suspicion_timeout(
            self.gossip.suspicion_mult, max(self._up, 1), self.gossip.probe_interval
        )
        return minimum * self._rng.uniform(1.0, 1.5)

    def _go_down(self, member: CrowdMember) -> None:
        member.up = False
        member.generation += 1
        self._up -= 1
        self._socket_changes.append(("down", member.index))

    def fail_members(
        self, members: Iterable[CrowdMember], now: float, recover_after: tuple[float, float] | None
    ) -> list[str]:
        names = []
        for member in members:
            self._go_down(member)
            self.stats.members_failed += 1
            suspect_at = now + self._rng.uniform(*self.config.suspect_after)
            self._push_schedule(suspect_at, "suspect", member)
            self._push_schedule(suspect_at + self._dead_delay(), "dead", member)
            if recover_after is not None:
                self._push_schedule(now + self._rng.uniform(*recover_after), "recover", member)
            names.append(member.name)
        return names

    def fail(self, count: int, now: float) -> list[str]:
        """``count`` random members stop answering; the crowd suspects them, then declares
        them dead, on the schedule of ``suspect_after`` / ``dead_after``."""
        return self.fail_members(self._pick(count), now, None)

    def _recover(self, member: CrowdMember) -> None:
        member.up = True
        member.generation += 1
        self._up += 1
        self.stats.members_recovered += 1
        self._socket_changes.append(("up", member.index))
        was_gone = member.status in (NodeStatus.DEAD, NodeStatus.LEFT)
        member.incarnation = min(member.incarnation + 1, _INCARNATION_MAX)
        member.status = NodeStatus.ALIVE
        self._broadcast_alive(member)
        if was_gone:
            # Serf: a member that comes back stamps a new join intent.
            member.status_ltime = self._clock.time()
            self._clock.increment()
            self._broadcast(
                codec.encode_user(messages.encode_join_intent(member.name, member.status_ltime)),
                ("serf", member.name),
            )
        self._changed()

    def recover(self, names: Iterable[str]) -> list[str]:
        """Bring failed members back with a higher incarnation."""
        back = []
        for name in names:
            member = self._by_name.get(name)
            if member is not None and not member.up and member.status is not NodeStatus.LEFT:
                self._recover(member)
                back.append(name)
        return back

    def grow(self, count: int) -> list[str]:
        """``count`` new members join: alive and join intent, gossiped to the agent."""
        if self.size + count > MAX_MEMBERS:
            raise ValueError(f"the crowd holds at most {MAX_MEMBERS} members")
        names = []
        for _ in range(count):
            member = self._new_member()
            member.status_ltime = self._clock.time()
            self._clock.increment()
            self._broadcast_alive(member)
            self._broadcast(
                codec.encode_user(messages.encode_join_intent(member.name, member.status_ltime)),
                ("serf", member.name),
            )
            self.stats.members_added += 1
            names.append(member.name)
        return names

    def leave(self, count: int) -> list[str]:
        """``count`` random members leave gracefully: leave intent, then dead from self."""
        names = []
        for member in self._pick(count):
            self._go_down(member)
            member.status_ltime = self._clock.time()
            self._clock.increment()
            member.status = NodeStatus.LEFT
            self._broadcast(
                codec.encode_user(
                    messages.encode_leave_intent(member.name, member.status_ltime, False)
                ),
                ("serf", member.name),
            )
            self._broadcast(
                codec.encode_dead(member.incarnation, member.name, member.name),
                ("core", member.name),
            )
            self.stats.members_left += 1
            names.append(member.name)
            self._changed()
        return names

    def flap(
        self,
        rate_per_s: float,
        duration: float,
        now: float,
        down: tuple[float, float] = (1.0, 15.0),
    ) -> float:
        """For ``duration`` seconds, fail ``rate_per_s`` of the up members per second, each
        coming back after ``down`` seconds with a higher incarnation; returns the time when
        the last one will be back."""
        self._flap_until = now + duration
        self._flap_rate = rate_per_s
        self._flap_down = down
        self._flap_credit = 0.0
        self._last_tick = now
        return self._flap_until + down[1]

    def _flap(self, now: float) -> None:
        if now >= self._flap_until or self._flap_rate <= 0:
            return
        self._flap_credit += self._flap_rate * self._up * max(0.0, now - self._last_tick)
        whole = int(self._flap_credit)
        if whole:
            self._flap_credit -= whole
            self.fail_members(self._pick(whole), now, self._flap_down)

    def fire_user_event(self, name: str, payload: bytes, coalesce: bool = False) -> int:
        """A user event fired on a random member; returns its Lamport time."""
        event = BufferedEvent(self._event_clock.time(), name, payload, coalesce)
        self._event_clock.increment()
        self._events.admit(event, self._event_clock.time())
        self._broadcast(codec.encode_user(messages.encode_user_event(event)), None)
        self._changed()
        return event.lamport_time

    # ------------------------------------------------------------------ reporting

    def rtt_summary(self) -> dict[str, float]:
        ordered = sorted(self.rtts)
        if not ordered:
            return {"samples": 0}

        def at(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

        return {
            "samples": len(ordered),
            "p50_ms": round(at(0.5), 3),
            "p99_ms": round(at(0.99), 3),
            "max_ms": round(ordered[-1] * 1000, 3),
        }

    def externals_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "name": e.name,
                "address": f"{e.address[0]}:{e.address[1]}",
                "incarnation": e.incarnation,
                "status": e.status.name,
                "status_ltime": e.status_ltime,
                "queued_broadcasts": len(e.queue),
            }
            for e in self.externals.values()
        ]


# ---------------------------------------------------------------------------- the shell


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


class _PushPullServicer(gossip_pb2_grpc.GossipServicer):
    """Push-pull for every member (they share one state), behind the per-member splices."""

    def __init__(self, crowd: Crowd) -> None:
        self._crowd = crowd

    async def PushPull(
        self, request: pb.PushPullRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PushPullResponse:
        crowd = self._crowd
        try:
            frame = crowd.core.serve_push_pull(request.frame, crowd.now)
        except PushPullRefused as error:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"push-pull refused: {error}")
        crowd.apply([])
        return pb.PushPullResponse(frame=frame)

    async def Attend(
        self, request: pb.AttendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.AttendResponse]:
        # Simulated members have no connections to close: the agent leaves them to
        # probing, as it does an agent that does not serve Attend.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the crowd's members do not attend")
        yield pb.AttendResponse()  # unreachable; makes this a stream handler

    async def Ping(
        self, request: pb.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PingResponse:
        # Simulated members answer only over UDP: a probe the agent loses is not saved by
        # a stream ping, as with an agent that does not serve Ping.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the crowd's members answer over UDP")


class Crowd:
    """The crowd on the running asyncio loop: start, drive scenarios, stop."""

    def __init__(self, config: CrowdConfig) -> None:
        self.config = config
        self._core: CrowdCore | None = None
        self._udp: list[socket.socket | None] = []
        self._tcp: list[socket.socket | None] = []
        self._fronts: dict[int, set[asyncio.StreamWriter]] = {}
        self._server: grpc.aio.Server | None = None
        self._backend = ""
        self._tmpdir = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._channels: dict[Address, grpc.aio.Channel] = {}
        self._in_flight: set[Address] = set()
        self._closed = False
        # Dense samples: the crowd is the control beside an agent sampled as densely.
        self.loop_lag = LoopLagProbe(interval=0.05)
        self.tcp_bytes_in = 0
        self.tcp_bytes_out = 0
        self.tcp_connections = 0
        self.send_errors = 0
        self.bind_seconds = 0.0
        self.fd_limit = 0

    @property
    def core(self) -> CrowdCore:
        assert self._core is not None, "the crowd has not started"
        return self._core

    @property
    def now(self) -> float:
        assert self._loop is not None, "the crowd has not started"
        return self._loop.time()

    @property
    def port(self) -> int:
        return self.core.port

    @property
    def seed(self) -> str:
        """The address an agent joins through: member 0, which never fails."""
        host, port = self.core.members[0].address
        return f"{host}:{port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.fd_limit = raise_fd_limit()
        needed = 2 * self.config.size + SPARE_FDS
        if needed > self.fd_limit:
            raise RuntimeError(
                f"a crowd of {self.config.size} needs about {needed} file descriptors; "
                f"the limit is {self.fd_limit}"
            )
        self._tmpdir = tempfile.mkdtemp(prefix="crowd-")
        self._backend = os.path.join(self._tmpdir, "push-pull.sock")
        server = grpc.aio.server(options=CHANNEL_OPTIONS)
        gossip_pb2_grpc.add_GossipServicer_to_server(_PushPullServicer(self), generic_only(server))
        if server.add_insecure_port(f"unix:{self._backend}") == 0:
            raise RuntimeError(f"cannot serve push-pull on unix:{self._backend}")
        await server.start()
        self._server = server
        started = time.perf_counter()
        self._bind_all()
        self.bind_seconds = time.perf_counter() - started
        self.loop_lag.start()
        self._tick = self._loop.call_later(self.config.tick_interval, self._on_tick)
        log.info(
            "crowd of %d on 127.%d.0.0/16 port %d (bound in %.2fs)",
            self.config.size,
            self.config.block,
            self.core.port,
            self.bind_seconds,
        )

    def _bind_all(self) -> None:
        fixed = self.config.port
        for _attempt in range(1 if fixed else 20):
            port = fixed or random.randrange(20_000, 60_000)
            core = CrowdCore(self.config, port, self.now)
            self._core = core
            try:
                for member in core.members:
                    self._open(member.index)
            except OSError as error:
                self._close_sockets()
                if fixed:
                    raise RuntimeError(f"cannot bind the crowd on port {port}: {error}") from None
                log.info(
                    "port %d is taken on some member address (%s); trying another", port, error
                )
                continue
            return
        raise RuntimeError("no port was free on every crowd address")

    def _open(self, index: int) -> None:
        """Bind member ``index``'s UDP socket and TCP listener (raises OSError)."""
        host, port = self.core.members[index].address
        while len(self._udp) <= index:
            self._udp.append(None)
            self._tcp.append(None)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            udp.setblocking(False)
        except OSError:
            udp.close()
            raise
        self._udp[index] = udp
        self._listen(index)
        assert self._loop is not None
        self._loop.add_reader(udp.fileno(), self._drain, index)

    def _listen(self, index: int) -> None:
        host, port = self.core.members[index].address
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # A member coming back rebinds while old connections sit in TIME_WAIT.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            tcp.listen(64)
            tcp.setblocking(False)
        except OSError:
            tcp.close()
            raise
        self._tcp[index] = tcp
        assert self._loop is not None
        self._loop.add_reader(tcp.fileno(), self._accept, index)

    def _unlisten(self, index: int) -> None:
        tcp = self._tcp[index]
        if tcp is not None:
            self._tcp[index] = None
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(tcp.fileno())
            tcp.close()
        # A dead process's connections are reset, not left half-open.
        for writer in self._fronts.pop(index, set()):
            transport = writer.transport
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()

    def _close_sockets(self) -> None:
        for index in range(len(self._udp)):
            udp = self._udp[index]
            if udp is not None:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(udp.fileno())
                udp.close()
                self._udp[index] = None
            self._unlisten(index)
        self._udp.clear()
        self._tcp.clear()

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tick is not None:
            self._tick.cancel()
        self.loop_lag.stop()
        self._close_sockets()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        if self._server is not None:
            await self._server.stop(0.5)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # ------------------------------------------------------------------ I/O

    def _drain(self, index: int) -> None:
        sock = self._udp[index]
        if sock is None or self._core is None:
            return
        now = self.now
        core = self._core
        for _ in range(MAX_BATCH):
            try:
                data, source = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.apply(core.receive(index, (str(source[0]), int(source[1])), data, now))

    def apply(self, effects: Iterable[Effect]) -> None:
        """Carry out effects, then open and close sockets as members came and went."""
        for effect in effects:
            if isinstance(effect, Datagram):
                sock = self._udp[effect.source] if effect.source < len(self._udp) else None
                if sock is None:
                    self.send_errors += 1
                    continue
                try:
                    sock.sendto(effect.data, effect.dest)
                except OSError:
                    # A full buffer drops the datagram, which UDP allows and SWIM tolerates.
                    self.send_errors += 1
            elif effect.dest not in self._in_flight:
                self._spawn(self._push_pull(effect))
        for change, index in self.core.take_socket_changes():
            try:
                if change == "add":
                    self._open(index)
                elif change == "down":
                    self._unlisten(index)
                elif change == "up" and self._tcp[index] is None:
                    self._listen(index)
            except OSError as error:
                log.warning("member %d cannot bind (%s)", index, error)

    def _on_tick(self) -> None:
        self._tick = None
        if self._closed:
            return
        now = self.now
        try:
            self.apply(self.core.tick(now))
        finally:
            assert self._loop is not None
            self._tick = self._loop.call_at(now + self.config.tick_interval, self._on_tick)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_pull(self, effect: PushPullTo) -> None:
        dest = effect.dest
        self._in_flight.add(dest)
        try:
            channel = self._channels.get(dest)
            if channel is None:
                channel = grpc.aio.insecure_channel(f"{dest[0]}:{dest[1]}", options=CHANNEL_OPTIONS)
                self._channels[dest] = channel
            stub = gossip_pb2_grpc.GossipStub(channel)
            try:
                response = await stub.PushPull(
                    pb.PushPullRequest(frame=effect.frame),
                    timeout=self.core.gossip.push_pull_timeout,
                )
            except grpc.aio.AioRpcError as error:
                self.core.push_pull_failed()
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    self._channels.pop(dest, None)
                    await channel.close(None)
                return
            self.core.merge_push_pull_response(bytes(response.frame), self.now)
            self.apply([])
        finally:
            self._in_flight.discard(dest)

    def _accept(self, index: int) -> None:
        sock = self._tcp[index]
        if sock is None:
            return
        for _ in range(16):
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self.tcp_connections += 1
            self._spawn(self._splice(index, conn))

    async def _splice(self, index: int, conn: socket.socket) -> None:
        """Carry one TCP connection to member ``index`` to the push-pull server and back."""
        try:
            front_reader, front_writer = await asyncio.open_connection(sock=conn)
        except OSError:
            conn.close()
            return
        try:
            back_reader, back_writer = await asyncio.open_unix_connection(self._backend)
        except OSError:
            front_writer.close()
            return
        fronts = self._fronts.setdefault(index, set())
        fronts.add(front_writer)
        try:
            await asyncio.gather(
                self._pipe(front_reader, back_writer, inbound=True),
                self._pipe(back_reader, front_writer, inbound=False),
            )
        finally:
            fronts.discard(front_writer)
            for writer in (front_writer, back_writer):
                writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inbound: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    break
                if inbound:
                    self.tcp_bytes_in += len(data)
                else:
                    self.tcp_bytes_out += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side is done: so is the other (gRPC connections are not half-closed).
            writer.close()

    # ------------------------------------------------------------------ scenarios

    def fail(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        names = self.core.fail(self._count(fraction, count), self.now)
        self.apply([])
        return names

    def recover(self, names: Iterable[str]) -> list[str]:
        back = self.core.recover(names)
        self.apply([])
        return back

    def grow(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        names = self.core.grow(self._count(fraction, count))
        self.apply([])
        return names

    def leave(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        names = self.core.leave(self._count(fraction, count))
        self.apply([])
        return names

    def flap(self, rate_per_s: float, duration: float, down: tuple[float, float]) -> float:
        """Starts flapping; returns the loop time when the last flapped member is back."""
        return self.core.flap(rate_per_s, duration, self.now, down)

    def fire_user_event(self, name: str, payload: bytes, coalesce: bool = False) -> int:
        return self.core.fire_user_event(name, payload, coalesce)

    def _count(self, fraction: float | None, count: int | None) -> int:
        if count is not None:
            return max(0, int(count))
        if fraction is None:
            raise ValueError("give a fraction or a count")
        return max(0, round(fraction * self.core.up_count))

    def stats(self) -> dict[str, Any]:
        core = self.core
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lag = self.loop_lag.stats
        return {
            **core.stats.as_dict(),
            "members": core.size,
            "up": core.up_count,
            "version": core.version,
            "port": core.port,
            "tcp_bytes_from_agents": self.tcp_bytes_in,
            "tcp_bytes_to_agents": self.tcp_bytes_out,
            "tcp_connections": self.tcp_connections,
            "send_errors": self.send_errors,
            "probe_rtt": core.rtt_summary(),
            "externals": core.externals_summary(),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss_kib": usage.ru_maxrss,
            "bind_seconds": round(self.bind_seconds, 3),
            "fd_limit": self.fd_limit,
            "loop_lag": {
                "max_ms": round(lag.max * 1000, 1),
                "p99_ms": round(lag.percentile(0.99) * 1000, 1),
                "samples": lag.samples,
            },
        }


# ---------------------------------------------------------------------------- the process


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    pair = (float(low), float(high or low))
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH seconds, got {text!r}")
    return pair


def _tags(pairs: Sequence[str] | None) -> dict[str, str]:
    if not pairs:
        return dict(DEFAULT_TAGS)
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--tag must be KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m controlplane.testing.crowd",
        description="Play N gossip members on loopback; commands as JSON lines on stdin.",
    )
    p.add_argument("--size", type=int, required=True, help="members at start")
    p.add_argument("--profile", default="lan", choices=sorted(PROFILES))
    p.add_argument("--block", type=int, default=1, help="members live in 127.BLOCK.0.0/16")
    p.add_argument("--port", type=int, default=0, help="port of every member (0: a free one)")
    p.add_argument("--prefix", default="crowd", help="member name prefix")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="member tag (repeatable)")
    p.add_argument("--encrypt", action="append", metavar="BASE64", help="gossip key, primary first")
    p.add_argument("--cluster-label", default="")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, reported)")
    p.add_argument("--transmits", type=int, default=3, help="sends of each change to each agent")
    p.add_argument("--no-probe", action="store_true", help="do not probe the agents")
    p.add_argument("--no-suspect-agents", action="store_true")
    p.add_argument("--no-push-pull", action="store_true", help="never start push-pulls")
    p.add_argument("--suspect-after", type=_pair, default=(0.5, 2.0), metavar="LOW,HIGH")
    p.add_argument("--dead-after", type=_pair, default=None, metavar="LOW,HIGH")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    p.add_argument("--log-level", default="info")
    return p


def config_from_args(args: argparse.Namespace) -> CrowdConfig:
    try:
        keys = tuple(base64.b64decode(key, validate=True) for key in args.encrypt or ())
    except (binascii.Error, ValueError):
        raise SystemExit("--encrypt must be base64") from None
    return CrowdConfig(
        size=args.size,
        profile=args.profile,
        block=args.block,
        port=args.port,
        name_prefix=args.prefix,
        tags=_tags(args.tag),
        keys=keys,
        label=args.cluster_label,
        # A fixed default seed would make every run draw the same timings (the first
        # push-pull always at the same point); a fresh one is reported for replay.
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32),
        transmits=args.transmits,
        probe_agents=not args.no_probe,
        suspect_agents=not args.no_suspect_agents,
        push_pull_agents=not args.no_push_pull,
        suspect_after=args.suspect_after,
        dead_after=args.dead_after,
    )


def _write(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def handle_command(crowd: Crowd, request: Mapping[str, Any]) -> dict[str, Any]:
    """One control command; raises ValueError/KeyError/TypeError for bad input."""
    op = request.get("op")
    if op == "stats":
        return crowd.stats()
    if op == "view":
        return crowd.core.view()
    if op == "fail":
        return {"names": crowd.fail(request.get("fraction"), request.get("count"))}
    if op == "recover":
        return {"names": crowd.recover(request["names"])}
    if op == "grow":
        return {"names": crowd.grow(request.get("fraction"), request.get("count"))}
    if op == "leave":
        return {"names": crowd.leave(request.get("fraction"), request.get("count"))}
    if op == "flap":
        low, high = request.get("down", (1.0, 15.0))
        until = crowd.flap(float(request["rate"]), float(request["duration"]), (low, high))
        return {"seconds_until_settled": round(until - crowd.now, 3)}
    if op == "event":
        payload = str(request.get("payload", "")).encode()
        return {"lamport_time": crowd.fire_user_event(str(request["name"]), payload)}
    raise ValueError(f"unknown op {op!r}")


async def serve(config: CrowdConfig, max_seconds: float) -> int:
    """Run a crowd until ``stop``, end of input or ``max_seconds``; commands on stdin."""
    loop = asyncio.get_running_loop()
    crowd = Crowd(config)
    await crowd.start()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _write(
        {
            "ready": True,
            "seed": crowd.seed,
            "port": crowd.port,
            "members": config.size,
            "bind_seconds": round(crowd.bind_seconds, 3),
            "random_seed": config.seed,
            "pid": os.getpid(),
        }
    )
    deadline = loop.time() + max_seconds
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("crowd stops after --max-seconds %.0f", max_seconds)
                break
            try:
                line = await asyncio.wait_for(reader.readline(), remaining)
            except TimeoutError:
                continue
            if not line:
                break
            try:
                request = json.loads(line)
                if request.get("op") == "stop":
                    _write({"ok": True, "stats": crowd.stats()})
                    break
                _write({"ok": True, **handle_command(crowd, request)})
            except (ValueError, KeyError, TypeError) as error:
                _write({"ok": False, "error": f"{type(error).__name__}: {error}"})
    finally:
        await crowd.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        # "crowd" in every line: the loop-lag probe logs under the agent's logger name.
        format="%(asctime)s %(levelname)s crowd %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(serve(config_from_args(args), args.max_seconds))


# ---------------------------------------------------------------------------- the parent's handle


class CrowdError(RuntimeError):
    """The crowd process failed, refused a command or did not answer in time."""


class CrowdProcess:
    """A crowd in a child process, driven over its stdin/stdout (see :func:`serve`)."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="crowd-stdout", daemon=True)
        self._reader.start()
        self.ready: dict[str, Any] = {}

    @classmethod
    def start(
        cls,
        size: int,
        *,
        log_dir: Path,
        args: Sequence[str] = (),
        timeout: float = 120.0,
        name: str = "crowd",
    ) -> CrowdProcess:
        """Start a crowd of ``size`` members (extra CLI ``args``); returns once it is ready."""
        log_path = log_dir / f"{name}.log"
        command = [sys.executable, "-m", "controlplane.testing.crowd", "--size", str(size), *args]
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env=clean_environment(),
            )
        crowd = cls(process, log_path)
        try:
            crowd.ready = crowd._next_line(timeout)
        except BaseException:
            crowd.kill()
            raise
        return crowd

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise CrowdError(f"the crowd did not answer within {timeout}s\n{self.log()}") from None
        if line is None:
            raise CrowdError(f"the crowd exited ({self.process.poll()}):\n{self.log()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def log(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    @property
    def seed(self) -> str:
        return str(self.ready["seed"])

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(self, op: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its reply; raises CrowdError when it fails."""
        with self._lock:
            if self.process.poll() is not None or self.process.stdin is None:
                raise CrowdError(f"the crowd is not running:\n{self.log()}")
            self.process.stdin.write(json.dumps({"op": op, **params}) + "\n")
            self.process.stdin.flush()
            reply = self._next_line(timeout)
        if not reply.get("ok"):
            raise CrowdError(f"crowd refused {op}: {reply.get('error')}")
        return reply

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def view(self) -> dict[str, list[str]]:
        reply = self.call("view")
        return {key: list(reply[key]) for key in ("alive", "failed", "left", "declared_dead")}

    def fail(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        return list(self.call("fail", fraction=fraction, count=count)["names"])

    def recover(self, names: Sequence[str]) -> list[str]:
        return list(self.call("recover", names=list(names))["names"])

    def grow(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        return list(self.call("grow", fraction=fraction, count=count)["names"])

    def leave(self, fraction: float | None = None, count: int | None = None) -> list[str]:
        return list(self.call("leave", fraction=fraction, count=count)["names"])

    def flap(
        self, rate_per_s: float, duration: float, down: tuple[float, float] = (1.0, 15.0)
    ) -> float:
        """Start flapping; returns seconds until the last flapped member is back."""
        reply = self.call("flap", rate=rate_per_s, duration=duration, down=list(down))
        return float(reply["seconds_until_settled"])

    def fire_user_event(self, name: str, payload: str = "") -> int:
        return int(self.call("event", name=name, payload=payload)["lamport_time"])

    def stop(self, timeout: float = 15.0) -> dict[str, Any]:
        """Ask the crowd to stop; returns its final stats ({} if it could not say)."""
        final: dict[str, Any] = {}
        with contextlib.suppress(CrowdError, OSError, ValueError):
            final = self.call("stop", timeout=timeout).get("stats", {})
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return final

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> CrowdProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self.kill()


if __name__ == "__main__":
    sys.exit(main())
