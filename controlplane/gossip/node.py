"""The SWIM + Lifeguard state machine of one member: bytes and time in, effects out.

``GossipNode`` owns the node map, the probe cycle (direct, then indirect
probes with nacks), suspicion with Lifeguard confirmations, refutation,
piggybacked and periodic gossip, push-pull anti-entropy, reconnection to
failed members and seeds, and reaping of long-dead members. It performs no I/O
and reads no clock: every entry point takes ``now`` (monotonic seconds) and
returns the effects the shell must carry out.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controlplane.gossip import codec
from controlplane.gossip.awareness import Awareness
from controlplane.gossip.config import GossipConfig
from controlplane.gossip.effects import (
    Effect,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    MergeRemoteState,
    NameConflict,
    PingComplete,
    ReachedOnlyByStream,
    SendPacket,
    StartPushPull,
    StartStreamPing,
    UserMessage,
)
from controlplane.gossip.errors import (
    MetadataTooLarge,
    PayloadTooLarge,
    PushPullRejected,
    StreamPingRefused,
)
from controlplane.gossip.formulas import (
    adaptive_probe_timeout,
    expected_confirmations,
    probe_suspect_after,
    push_pull_scale,
    suspicion_bounds,
    suspicion_probe_chance,
)
from controlplane.gossip.incarnation import (
    newer,
    next_incarnation,
    older,
    refutation,
    within_step,
)
from controlplane.gossip.keyring import Keyring
from controlplane.gossip.names import valid_name
from controlplane.gossip.queue import TransmitLimitedQueue
from controlplane.gossip.rtt import RttEstimator
from controlplane.gossip.state import Address, Member, NodeState, NodeStatus
from controlplane.gossip.stats import GossipStats
from controlplane.gossip.suspicion import Suspicion
from controlplane.wire.v1 import gossip_pb2 as pb

MAX_NAME_SIZE = 255
_SEQ_MASK = 0xFFFFFFFF
# Members whose last hinted probe (probe_now) is remembered before old ones are dropped.
HINTED_KEPT = 256
# What merging a record that changes a member costs against one that changes nothing,
# in merge_some's units: an agent measured about 75 us against 4 us, events and
# snapshot lines included. Counting changes keeps a slice's time steady whether a
# state is all news (a join) or all known (anti-entropy in a settled cluster).
MERGE_CHANGE_COST = 16
# PushPullState field numbers (protos/controlplane/gossip/v1/gossip.proto).
_MEMBERS_FIELD = pb.PushPullState.MEMBERS_FIELD_NUMBER
_USER_STATE_FIELD = pb.PushPullState.USER_STATE_FIELD_NUMBER


UserStateProvider = Callable[[bool], bytes]
"""The push-pull state of the layer above gossip (memberlist's ``LocalState``), asked
for with the exchange's join flag each time the core builds a push-pull state: a
query, built only when an exchange starts or is answered. The peer's state comes
back as a :class:`MergeRemoteState` effect."""

AckCoordinateProvider = Callable[[], pb.Coordinate | None]
"""The coordinate the core puts in its ack of a direct ping (memberlist's
``AckPayload``), or None for none; asked for once per ack."""


# States of a probe's stream ping (memberlist's TCP fallback, GossipConfig.tcp_pings).
_NO_STREAM_PING = 0
_STREAM_PING_PENDING = 1
_STREAM_PING_FAILED = 2


@dataclass(slots=True)
class _Probe:
    """Our own probe of ``target``: indirect probes (and a stream ping) at ``timeout_at``,
    a suspicion at ``suspect_at`` if no ack came, the health score settled at ``deadline``.
    A stream ping still in flight at ``suspect_at`` holds the suspicion back until it
    fails or ``deadline`` comes (memberlist waits for it too)."""

    seq_no: int
    target: str
    target_address: Address
    sent: float
    timeout_at: float
    suspect_at: float
    deadline: float
    indirect_sent: bool = False
    suspected: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    nacks_at_suspicion: int = 0
    stream_ping: int = _NO_STREAM_PING


@dataclass(slots=True)
class _Relay:
    """A ping sent on behalf of ``requester`` (indirect probe)."""

    seq_no: int
    requester: Address
    requester_seq_no: int
    send_nack: bool
    # A nack is due at ``nack_at`` (our probe timeout); a late ack is still relayed until
    # ``timeout_at`` (memberlist's ProbeTimeout).
    nack_at: float
    timeout_at: float


@dataclass(slots=True)
class PushPullMerge:
    """A peer's push-pull state, merged a slice at a time (see :meth:`GossipNode.merge_some`).

    A full state lists every member of the cluster; merging thousands of records
    at once would hold the caller for as long, so the shell merges a bounded
    number of records per step and lets other work run in between.
    """

    records: Sequence[pb.MemberState]
    user_state: bytes
    join: bool
    position: int = 0
    delivered: bool = False

    @property
    def done(self) -> bool:
        return self.delivered


class GossipNode:
    """One gossip member. See the module docstring; all methods are non-blocking and pure."""

    def __init__(
        self,
        config: GossipConfig,
        name: str,
        address: Address,
        *,
        meta: bytes = b"",
        rng: random.Random,
        now: float,
        keyring: Keyring | None = None,
        label: str = "",
        user_state: UserStateProvider | None = None,
        record_cache: dict[tuple[object, ...], bytes] | None = None,
        ack_coordinate: AckCoordinateProvider | None = None,
    ) -> None:
        if not valid_name(name):
            # Its peers would drop every message naming it.
            raise ValueError("node name must be 1 to 128 characters of [A-Za-z0-9._-]")
        if len(meta) > config.max_meta_size:
            raise MetadataTooLarge(len(meta), config.max_meta_size)
        self.config = config
        self.name = name
        self.address = address
        self.stats = GossipStats()
        self._rng = rng
        self._keyring = keyring
        self._label = label.encode()
        self._header = codec.frame_header(label, keyring is not None)
        self._user_state = user_state
        self._ack_coordinate = ack_coordinate
        # Push-pull record encodings shared by the cores a simulator runs in one process
        # (an encoding depends only on the record's fields): each is built once, not once
        # per core. None in an agent, whose core is alone.
        self._shared_records = record_cache
        # Room for messages in one datagram: the buffer minus frame and packet header.
        self._packet_room = (
            config.udp_buffer_size
            - codec.frame_overhead(label, keyring is not None)
            - codec.PACKET_HEADER_SIZE
        )
        self._awareness = Awareness(config.awareness_max_multiplier)
        # Round trips of direct probes: of all members, and of each member (a slow member
        # gets a longer timeout without slowing the probes of the others).
        self._rtt = RttEstimator()
        self._target_rtt: dict[str, RttEstimator] = {}
        self._queue = TransmitLimitedQueue(
            config.retransmit_mult, self._num_nodes, config.max_broadcast_queue_depth
        )
        self._nodes: dict[str, NodeState] = {}
        # Same members as _nodes, in random order, for O(k) random selection.
        self._node_list: list[NodeState] = []
        self._probe_order: list[NodeState] = []
        self._probe_index = 0
        self._suspicions: dict[str, Suspicion] = {}
        self._suspicion_heap: list[tuple[float, int, str]] = []
        self._pending: dict[int, _Probe | _Relay] = {}
        self._hinted_at: dict[str, float] = {}
        self._pending_heap: list[tuple[float, int]] = []
        self._heap_counter = 0
        self._seq_no = 0
        self._left = False
        self._seeds: list[Address] = []
        self._seeds_until = now
        self._last_reject = ""
        # Timers start at random offsets so members do not act in lockstep (memberlist schedule).
        self._next_probe = now + rng.random() * config.probe_interval
        self._next_gossip = now + rng.random() * config.gossip_interval
        self._next_push_pull = now + rng.random() * config.push_pull_interval
        self._next_reconnect = now + config.reconnect_interval * (1.0 + rng.random())

        me = NodeState(name, address, meta, 1, NodeStatus.ALIVE, now)
        self._add_node(me)
        self._me = me
        self._queue.queue(codec.encode_alive(1, name, address, meta), name)

    # ------------------------------------------------------------------ queries

    @property
    def health_score(self) -> int:
        """Lifeguard awareness score: 0 is healthy; probe timing is scaled by score + 1."""
        return self._awareness.score

    @property
    def incarnation(self) -> int:
        return self._me.incarnation

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def broadcast_queue_depth(self) -> int:
        return len(self._queue)

    def members(self) -> list[Member]:
        """Every member in the node map, this one included, dead and left ones too."""
        return [node.snapshot() for node in self._node_list]

    def member(self, name: str) -> Member | None:
        node = self._nodes.get(name)
        return None if node is None else node.snapshot()

    def incarnation_of(self, name: str, address: Address) -> int | None:
        """The member's incarnation if it is known at ``address`` (no snapshot built)."""
        node = self._nodes.get(name)
        if node is None or node.address != address:
            return None
        return node.incarnation

    def random_alive(self, count: int, exclude: str, now: float) -> list[Address]:
        """Addresses of up to ``count`` distinct random alive members other than this
        one and ``exclude``, in O(count) (memberlist kRandomNodes), not O(members)."""
        return [
            node.address for node in self._random_nodes(count, exclude, alive_only=True, now=now)
        ]

    def num_alive(self) -> int:
        return sum(1 for node in self._node_list if not node.status.dead_or_left)

    def next_deadline(self) -> float:
        """Earliest ``now`` at which :meth:`tick` has work."""
        deadline = self._next_reconnect
        if not self._left:
            deadline = min(deadline, self._next_probe, self._next_push_pull)
        if self._queue:
            deadline = min(deadline, self._next_gossip)
        if self._pending_heap:
            deadline = min(deadline, self._pending_heap[0][0])
        if self._suspicion_heap:
            deadline = min(deadline, self._suspicion_heap[0][0])
        return deadline

    # ------------------------------------------------------------------ entry points

    def join(self, seeds: Sequence[Address], now: float) -> list[Effect]:
        """Start a full state exchange with every seed; seeds are retried until reconnected."""
        effects: list[Effect] = []
        if self._left:
            self._left = False
            self._refute(self._me, self._me.incarnation)
            self._me.status = NodeStatus.ALIVE
            self._me.state_change = now
        for seed in seeds:
            if seed != self.address and seed not in self._seeds:
                self._seeds.append(seed)
        self._seeds_until = now + self.config.reconnect_timeout
        request = self._local_state(join=True)
        for seed in seeds:
            if seed == self.address:
                continue
            self.stats.push_pulls_started += 1
            effects.append(StartPushPull(seed, request, True))
        return effects

    def leave(self, now: float) -> list[Effect]:
        """Announce a graceful leave (a dead message from ourselves) and gossip it at once.

        Keep calling :meth:`tick` for a few gossip intervals so it spreads; probing,
        push-pull and reconnecting stop.
        """
        effects: list[Effect] = []
        if self._left:
            return effects
        self._left = True
        self._on_dead(self._me.incarnation, self.name, self.name, now, effects)
        self._gossip(now, effects)
        return effects

    def update_meta(self, meta: bytes, now: float) -> list[Effect]:
        """Publish new metadata under a new incarnation."""
        if len(meta) > self.config.max_meta_size:
            raise MetadataTooLarge(len(meta), self.config.max_meta_size)
        me = self._me
        me.incarnation = next_incarnation(me.incarnation)
        me.meta = meta
        self._queue.queue(codec.encode_alive(me.incarnation, me.name, me.address, meta), me.name)
        effects: list[Effect] = []
        self._gossip(now, effects)
        return effects

    def broadcast_user(self, payload: bytes, now: float) -> None:
        """Queue an opaque payload for piggybacked delivery to every member (best effort)."""
        message = codec.encode_user(payload)
        limit = self._packet_room - codec.COMPOUND_OVERHEAD
        if len(message) > limit:
            raise PayloadTooLarge(len(payload), limit - (len(message) - len(payload)))
        self._queue.queue(message, None)

    def restore(self, members: Sequence[Member], now: float) -> list[Effect]:
        """Load members from a snapshot (Serf's snapshot file, a test fixture) without gossip.

        Alive records are merged like push-pull records but not re-broadcast; records
        about this member are ignored. Returns the join events.
        """
        effects: list[Effect] = []
        for member in members:
            if member.name == self.name or member.status is not NodeStatus.ALIVE:
                continue
            self._on_alive(
                member.incarnation, member.name, member.address, member.meta, now, effects
            )
            self._queue.invalidate(member.name)
        return effects

    def probe_now(self, name: str, now: float) -> list[Effect]:
        """Probes ``name`` at once, out of turn: something outside the protocol says it
        may be gone (the shell saw its connection to us close, as a crashed process's
        does).

        Beyond memberlist, which waits for the member's turn: in a cluster of N, the
        first probe of a crashed member comes after a median of about 0.65 s (each
        member probes one other a second, at random), most of the spread of the time
        to detect it. The hint changes nothing else: the probe is an ordinary one,
        and a member that answers is untouched; one that does not is suspected and
        has Lifeguard's whole timeout to refute. Ignored for ourselves, for a member
        that is not alive, while a probe of it is in flight and, so that a flapping
        connection cannot turn into a probe storm, within a probe interval of the
        last hinted probe of it.
        """
        effects: list[Effect] = []
        state = self._nodes.get(name)
        if state is None or state is self._me or self._left:
            return effects
        if state.status is not NodeStatus.ALIVE:
            return effects
        if now < self._hinted_at.get(name, -math.inf) + self.config.probe_interval:
            return effects
        if any(isinstance(p, _Probe) and p.target == name for p in self._pending.values()):
            return effects
        if len(self._hinted_at) >= HINTED_KEPT:
            # Hints are rare (a connection closing); forget the old ones in one pass.
            horizon = now - self.config.probe_interval
            self._hinted_at = {n: at for n, at in self._hinted_at.items() if at > horizon}
        self._hinted_at[name] = now
        self.stats.hinted_probes += 1
        self._probe_node(state, now, effects)
        return effects

    def receive_packet(self, src: Address, data: bytes, now: float) -> list[Effect]:
        """Handle one datagram. Bad input is dropped and counted in ``stats``; never
        raises, except for a bug in strict mode (``GossipConfig.strict``)."""
        self.stats.packets_received += 1
        effects: list[Effect] = []
        if len(data) > self.config.max_packet_size:
            self.stats.drop("oversized")
            return effects
        try:
            body = codec.open_frame(data, self._label, self._keyring)
            packet = codec.decode_packet(body)
        except codec.FrameError as error:
            self.stats.drop(error.reason)
            return effects
        for message in packet.messages:
            self.stats.messages_received += 1
            try:
                self._dispatch(src, message, now, effects)
            except Exception:
                # Only a bug gets here (bad input is dropped by the handlers' checks):
                # counted, so one peer's message cannot take the member down, unless
                # strict (tests), where it must fail loudly (GossipConfig.strict).
                if self.config.strict:
                    raise
                self.stats.drop("internal_error")
        return effects

    def tick(self, now: float) -> list[Effect]:
        """Run every timer that is due at ``now``."""
        effects: list[Effect] = []
        self._expire_pending(now, effects)
        self._expire_suspicions(now, effects)
        if not self._left and now >= self._next_probe:
            self._probe(now, effects)
            self._next_probe = now + self._awareness.scale_timeout(self.config.probe_interval)
        if now >= self._next_gossip:
            if self._queue:
                self._gossip(now, effects)
            interval = self.config.gossip_interval
            self._next_gossip += interval * (math.floor((now - self._next_gossip) / interval) + 1)
        if not self._left and now >= self._next_push_pull:
            self._periodic_push_pull(now, effects)
            self._next_push_pull = now + push_pull_scale(
                self.config.push_pull_interval, self._num_nodes()
            )
        if now >= self._next_reconnect:
            if not self._left:
                self._reconnect(now, effects)
                self._reap(now, effects)
            self._next_reconnect = now + self.config.reconnect_interval
        return effects

    def handle_push_pull(
        self, src: Address, request: bytes, now: float
    ) -> tuple[bytes, list[Effect]]:
        """Serve a peer's push-pull: merge its state, return our framed state and effects.

        Raises PushPullRejected (counted in ``stats``) for a frame we refuse.
        """
        job = self.open_push_pull(request)
        effects = self.merge_some(job, now, len(job.records) * MERGE_CHANGE_COST)
        # Answering after the merge lets our reply carry refutations the request provoked,
        # which heals a partition in one exchange instead of two.
        return self.push_pull_reply(), effects

    def push_pull_response(self, src: Address, response: bytes | None, now: float) -> list[Effect]:
        """Merge the peer's answer to our StartPushPull; None means the exchange failed."""
        job = self.open_push_pull_response(response)
        if job is None:
            return []
        return self.merge_some(job, now, len(job.records) * MERGE_CHANGE_COST)

    def open_push_pull(self, request: bytes) -> PushPullMerge:
        """Decode a peer's push-pull request for merging with :meth:`merge_some`.

        Raises PushPullRejected (counted in ``stats``) for a frame we refuse.
        """
        state = self._open_push_pull(request)
        if state is None:
            raise PushPullRejected(self._last_reject)
        self.stats.push_pulls_served += 1
        return PushPullMerge(state.members, state.user_state, state.join)

    def open_push_pull_response(self, response: bytes | None) -> PushPullMerge | None:
        """Decode the answer to our StartPushPull; None (counted) when it failed."""
        state = None if response is None else self._open_push_pull(response)
        if state is None:
            self.stats.push_pulls_failed += 1
            return None
        return PushPullMerge(state.members, state.user_state, state.join)

    def merge_some(self, job: PushPullMerge, now: float, limit: int) -> list[Effect]:
        """Merge about ``limit`` units more of ``job``: a record that changes nothing
        costs one, a record that changes a member MERGE_CHANGE_COST. Once every record
        is merged, the layer above's state comes as a MergeRemoteState effect, after
        the member effects. Call again until ``job.done``."""
        effects: list[Effect] = []
        records = job.records
        nodes = self._nodes
        budget = max(limit, 1)
        index = job.position
        while index < len(records) and budget > 0:
            record = records[index]
            index += 1
            produced, queued = len(effects), self._queue.id_gen
            try:
                self._merge_record(record, now, effects)
            except Exception:
                # Only a bug gets here: counted, so one record cannot stop the merge,
                # unless strict (tests), where it must fail loudly (GossipConfig.strict).
                if self.config.strict:
                    raise
                self.stats.drop("internal_error")
            # A change shows as an effect, a broadcast queued (a suspicion confirmed
            # changes neither the record nor the effects) or a record to re-encode.
            changed = len(effects) != produced or self._queue.id_gen != queued
            node = nodes.get(record.name)
            if node is not None and node.encoded is None:
                # The member is new or changed (a suspicion changes it without an
                # effect). Encode it for our own state now, a slice at a time, rather
                # than all at once in the next reply.
                changed = True
                self._record_field(node)
            budget -= MERGE_CHANGE_COST if changed else 1
        job.position = index
        if index >= len(records) and not job.delivered:
            job.delivered = True
            if job.user_state:
                # memberlist: MergeRemoteState after the member records are merged.
                effects.append(MergeRemoteState(job.user_state, job.join))
        return effects

    def push_pull_reply(self) -> bytes:
        """Our framed state, the answer to a peer's push-pull."""
        return self._local_state(join=False)

    # ------------------------------------------------------------------ node map

    def _num_nodes(self) -> int:
        return len(self._nodes)

    def _add_node(self, node: NodeState) -> None:
        self._nodes[node.name] = node
        # Insert at a random offset so a new member is not always probed last.
        self._node_list.append(node)
        index = self._rng.randrange(len(self._node_list))
        last = len(self._node_list) - 1
        self._node_list[index], self._node_list[last] = (
            self._node_list[last],
            self._node_list[index],
        )
        if self._probe_order:
            position = self._rng.randint(self._probe_index, len(self._probe_order))
            self._probe_order.insert(position, node)

    def _random_nodes(
        self, count: int, exclude: str, *, alive_only: bool, now: float
    ) -> list[NodeState]:
        """Up to ``count`` distinct random members (memberlist kRandomNodes: 3n tries)."""
        picked: list[NodeState] = []
        nodes = self._node_list
        total = len(nodes)
        if total == 0 or count <= 0:
            return picked
        dead_horizon = self.config.gossip_to_the_dead_time
        for _ in range(3 * total):
            if len(picked) >= count:
                break
            node = nodes[self._rng.randrange(total)]
            if node is self._me or node.name == exclude:
                continue
            status = node.status
            if status is NodeStatus.ALIVE:
                pass
            elif status is NodeStatus.SUSPECT:
                if alive_only:
                    continue
            elif status is NodeStatus.DEAD:
                if alive_only or now - node.state_change > dead_horizon:
                    continue
            else:
                continue
            if node in picked:
                continue
            picked.append(node)
        return picked

    # ------------------------------------------------------------------ sending

    def _send(self, dest: Address, messages: list[bytes], effects: list[Effect]) -> None:
        """Send ``messages`` to ``dest`` with as many queued broadcasts as fit."""
        room = self._packet_room
        for message in messages:
            room -= codec.COMPOUND_OVERHEAD + len(message)
        if self._queue and room > codec.COMPOUND_OVERHEAD:
            messages = messages + self._queue.get_broadcasts(codec.COMPOUND_OVERHEAD, room)
        self._emit(dest, messages, effects)

    def _emit(self, dest: Address, messages: list[bytes], effects: list[Effect]) -> None:
        body = codec.packet_body(messages)
        self.stats.packets_sent += 1
        effects.append(SendPacket(dest, codec.seal(self._header, body, self._keyring)))

    def _gossip(self, now: float, effects: list[Effect]) -> None:
        targets = self._random_nodes(self.config.gossip_nodes, "", alive_only=False, now=now)
        for target in targets:
            messages = self._queue.get_broadcasts(codec.COMPOUND_OVERHEAD, self._packet_room)
            if not messages:
                return
            self._emit(target.address, messages, effects)

    # ------------------------------------------------------------------ probing

    def _next_seq_no(self) -> int:
        self._seq_no = (self._seq_no + 1) & _SEQ_MASK
        return self._seq_no

    def _arm(self, at: float, seq_no: int) -> None:
        heapq.heappush(self._pending_heap, (at, seq_no))

    def _drop_settled_timers(self) -> None:
        """Pops the timers of answered probes off the head of the heap, so that
        `next_deadline` is a real one: an answered probe's timeout would otherwise wake
        the agent for nothing, one idle wake-up per probe."""
        heap = self._pending_heap
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)

    def _probe(self, now: float, effects: list[Effect]) -> None:
        """Probe the next member of the shuffled round-robin, reshuffling after each pass."""
        reshuffled = False
        while True:
            if self._probe_index >= len(self._probe_order):
                if reshuffled:
                    return
                self._reset_probe_order()
                reshuffled = True
                if not self._probe_order:
                    return
            node = self._probe_order[self._probe_index]
            self._probe_index += 1
            if (
                node is self._me
                or node.status.dead_or_left
                or self._nodes.get(node.name) is not node
            ):
                continue
            self._probe_node(node, now, effects)
            return

    def _reset_probe_order(self) -> None:
        order = [n for n in self._node_list if n is not self._me and not n.status.dead_or_left]
        self._rng.shuffle(order)
        self._probe_order = order
        self._probe_index = 0

    def _probe_timeout(self, target: str) -> float:
        """The timeout of a direct probe of ``target``: adapted to the measured round trips
        (GossipConfig.adaptive_probe_timeout), of all members and of the target, whichever
        is longer; or memberlist's fixed ProbeTimeout."""
        config = self.config
        if not config.adaptive_probe_timeout:
            # memberlist does not scale ProbeTimeout with health: waiting longer does not
            # help UDP through; the scaled interval leaves more room for indirect acks.
            return config.probe_timeout
        floor, ceiling, score = (
            config.probe_timeout_floor,
            config.probe_timeout,
            self._awareness.score,
        )
        timeout = adaptive_probe_timeout(self._rtt.srtt, self._rtt.rttvar, floor, ceiling, score)
        own = self._target_rtt.get(target)
        if own is not None:
            timeout = max(
                timeout, adaptive_probe_timeout(own.srtt, own.rttvar, floor, ceiling, score)
            )
        return timeout

    def _probe_node(
        self, node: NodeState, now: float, effects: list[Effect], *, careful: bool = False
    ) -> None:
        """Ping ``node``; indirect probes follow its timeout, a suspicion follows them.

        A ``careful`` probe confirms a suspicion someone else raised: it takes
        memberlist's full time (ProbeTimeout, then indirect probes until the end of the
        interval) so that it confirms only what memberlist would.
        """
        interval = self._awareness.scale_timeout(self.config.probe_interval)
        seq_no = self._next_seq_no()
        messages = [codec.encode_ping(seq_no, node.name, self.name)]
        if node.status is not NodeStatus.ALIVE and self.config.buddy_system:
            # Buddy system: tell a suspect directly so it can refute at once. The suspicion
            # goes first (memberlist sends it after the ping): the suspect refutes before it
            # answers, so its ack carries the refutation straight back to us.
            messages.insert(0, codec.encode_suspect(node.incarnation, node.name, self.name))
        if careful or not self.config.adaptive_probe_timeout:
            timeout, suspect_after = self.config.probe_timeout, interval
        else:
            timeout = min(self._probe_timeout(node.name), interval)
            suspect_after = probe_suspect_after(timeout, interval)
        probe = _Probe(
            seq_no,
            node.name,
            node.address,
            now,
            now + timeout,
            now + suspect_after,
            now + interval,
        )
        self._pending[seq_no] = probe
        self._arm(probe.timeout_at, seq_no)
        self.stats.probes_sent += 1
        if node.status is NodeStatus.ALIVE:
            self._send(node.address, messages, effects)
        else:
            # No broadcasts ride on a probe of a suspect (memberlist sends it raw): the
            # member is likely gone, and each broadcast has only a few transmits to spend.
            self._emit(node.address, messages, effects)

    def _expire_pending(self, now: float, effects: list[Effect]) -> None:
        heap = self._pending_heap
        while heap and heap[0][0] <= now:
            at, seq_no = heapq.heappop(heap)
            pending = self._pending.get(seq_no)
            if pending is None:
                continue
            if isinstance(pending, _Relay):
                if at == pending.nack_at and pending.send_nack:
                    pending.send_nack = False
                    self._send(
                        pending.requester, [codec.encode_nack(pending.requester_seq_no)], effects
                    )
                if at == pending.timeout_at:
                    del self._pending[seq_no]
                continue
            if not pending.indirect_sent:
                if at == pending.timeout_at:
                    self._start_indirect(pending, now, effects)
                continue
            if not pending.suspected and at in (pending.suspect_at, pending.deadline):
                if at == pending.deadline and pending.stream_ping == _STREAM_PING_PENDING:
                    # Its answer would come too late to count (memberlist's deadline).
                    pending.stream_ping = _STREAM_PING_FAILED
                    self.stats.stream_pings_failed += 1
                if pending.stream_ping != _STREAM_PING_PENDING:
                    self._suspect_target(pending, now, effects)
            if at == pending.deadline:
                del self._pending[seq_no]
                self._probe_failed(pending)

    def _start_indirect(self, probe: _Probe, now: float, effects: list[Effect]) -> None:
        probe.indirect_sent = True
        self._arm(probe.suspect_at, probe.seq_no)
        if probe.deadline != probe.suspect_at:
            self._arm(probe.deadline, probe.seq_no)
        target = self._nodes.get(probe.target)
        if target is None:
            return
        peers = self._random_nodes(
            self.config.indirect_checks, target.name, alive_only=True, now=now
        )
        probe.expected_nacks = len(peers)
        request = codec.encode_indirect_ping(
            probe.seq_no, target.name, target.address, True, self.name
        )
        for peer in peers:
            self.stats.indirect_probes_sent += 1
            self._send(peer.address, [request], effects)
        if self.config.tcp_pings and probe.deadline > now:
            # memberlist state.go probeNode: also ping the member over the stream port, so a
            # member whose UDP is lost or filtered is not suspected while it answers there.
            probe.stream_ping = _STREAM_PING_PENDING
            self.stats.stream_pings_sent += 1
            ping = codec.packet_body([codec.encode_ping(probe.seq_no, target.name, self.name)])
            effects.append(
                StartStreamPing(
                    target.address,
                    codec.seal(self._header, ping, self._keyring),
                    probe.seq_no,
                    probe.deadline - now,
                )
            )

    def stream_ping_response(self, seq_no: int, response: bytes | None, now: float) -> list[Effect]:
        """The outcome of a :class:`StartStreamPing`: the response frame, or None when the
        call failed or timed out. An ack with the probe's sequence number settles the probe
        as answered (no suspicion; the health score improves, as after any ack) and says
        that UDP to the member fails; anything else counts as a failed stream ping, and a
        suspicion it held back is raised at once."""
        effects: list[Effect] = []
        probe = self._pending.get(seq_no)
        if not isinstance(probe, _Probe) or probe.stream_ping != _STREAM_PING_PENDING:
            return effects
        if response is not None and self._is_stream_ack(response, seq_no):
            del self._pending[seq_no]
            self._drop_settled_timers()
            self.stats.stream_pings_answered += 1
            self._awareness.apply_delta(-1)
            effects.append(ReachedOnlyByStream(probe.target, probe.target_address))
            return effects
        probe.stream_ping = _STREAM_PING_FAILED
        self.stats.stream_pings_failed += 1
        if now >= probe.suspect_at and not probe.suspected:
            self._suspect_target(probe, now, effects)
        return effects

    def _is_stream_ack(self, response: bytes, seq_no: int) -> bool:
        """True for a frame holding exactly one ack of ``seq_no``; a refusal is counted."""
        if len(response) > self.config.max_packet_size:
            self.stats.drop("oversized")
            return False
        try:
            packet = codec.decode_packet(codec.open_frame(response, self._label, self._keyring))
        except codec.FrameError as error:
            self.stats.drop(error.reason)
            return False
        messages = packet.messages
        if len(messages) != 1 or messages[0].WhichOneof("body") != "ack":
            self.stats.drop("invalid_message")
            return False
        return messages[0].ack.seq_no == seq_no

    def answer_stream_ping(self, request: bytes) -> bytes:
        """Answer a peer's ping over the stream port (``Gossip/Ping``, memberlist's TCP
        ping handler) with our framed ack. Raises :class:`StreamPingRefused` for a frame
        this member cannot open, anything but exactly one ping, or a ping of another
        member (the address was reused)."""
        reason = ""
        if len(request) > self.config.max_packet_size:
            reason = "oversized"
        else:
            try:
                packet = codec.decode_packet(codec.open_frame(request, self._label, self._keyring))
            except codec.FrameError as error:
                reason = error.reason
            else:
                messages = packet.messages
                if len(messages) != 1 or messages[0].WhichOneof("body") != "ping":
                    reason = "invalid_message"
                elif messages[0].ping.target not in ("", self.name):
                    reason = "wrong_target"
        if reason:
            self.stats.drop(reason)
            raise StreamPingRefused(reason)
        self.stats.stream_pings_served += 1
        ack = codec.packet_body([codec.encode_ack(messages[0].ping.seq_no)])
        return codec.seal(self._header, ack, self._keyring)

    def _suspect_target(self, probe: _Probe, now: float, effects: list[Effect]) -> None:
        probe.suspected = True
        probe.nacks_at_suspicion = probe.nacks
        self._probe_suspects(probe, now, effects)

    def _probe_suspects(self, probe: _Probe, now: float, effects: list[Effect]) -> None:
        """No ack, direct or relayed, in time: the target becomes suspect."""
        self.stats.probes_failed += 1
        target = self._nodes.get(probe.target)
        if target is None or target.status.dead_or_left:
            return
        self._on_suspect(target.incarnation, target.name, self.name, now, effects)
        self._encode_if_changed(target.name)

    def _probe_failed(self, probe: _Probe) -> None:
        """Still no ack when the interval ends: settle the health score (memberlist)."""
        # Lifeguard: missing nacks mean our own network or CPU is the likely culprit.
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(max(probe.expected_nacks - probe.nacks, 0))
        else:
            self._awareness.apply_delta(1)

    # ------------------------------------------------------------------ receiving

    def _dispatch(
        self, src: Address, message: pb.Message, now: float, effects: list[Effect]
    ) -> None:
        kind = message.WhichOneof("body")
        if kind == "ping":
            ping = message.ping
            if ping.target and ping.target != self.name:
                self.stats.drop("wrong_target")
                return
            coordinate = self._ack_coordinate() if self._ack_coordinate is not None else None
            self._send(src, [codec.encode_ack(ping.seq_no, coordinate)], effects)
        elif kind == "ack":
            if message.ack.HasField("coordinate"):
                self._ping_complete(src, message.ack, now, effects)
            self._on_ack(src, message.ack.seq_no, now, effects)
        elif kind == "alive":
            alive = message.alive
            address = codec.decode_address(alive.address)
            if address is None:
                self.stats.drop("invalid_message")
                return
            self._on_alive(alive.incarnation, alive.node, address, alive.meta, now, effects)
            self._encode_if_changed(alive.node)
        elif kind == "suspect":
            suspect = message.suspect
            if suspect.node == self.name:
                self._answer_stale_accusation(src, suspect.incarnation, effects)
            self._on_suspect(suspect.incarnation, suspect.node, suspect.from_node, now, effects)
            self._encode_if_changed(suspect.node)
        elif kind == "dead":
            dead = message.dead
            if dead.node == self.name:
                self._answer_stale_accusation(src, dead.incarnation, effects)
            self._on_dead(dead.incarnation, dead.node, dead.from_node, now, effects)
            self._encode_if_changed(dead.node)
        elif kind == "indirect_ping":
            self._on_indirect_ping(src, message.indirect_ping, now, effects)
        elif kind == "nack":
            pending = self._pending.get(message.nack.seq_no)
            if isinstance(pending, _Probe):
                pending.nacks += 1
        elif kind == "user":
            effects.append(UserMessage(message.user.payload))
        else:
            self.stats.drop("unknown_message")

    def _answer_stale_accusation(
        self, src: Address, incarnation: int, effects: list[Effect]
    ) -> None:
        """Beyond memberlist, which ignores them: an accusation of ourselves at an older
        incarnation than ours means ``src`` missed our refutation, and would hold its
        suspicion until anti-entropy. Our alive message goes straight back to it."""
        me = self._me
        if older(incarnation, me.incarnation) and not self._left:
            self._send(
                src, [codec.encode_alive(me.incarnation, me.name, me.address, me.meta)], effects
            )

    def _on_ack(self, src: Address, seq_no: int, now: float, effects: list[Effect]) -> None:
        pending = self._pending.pop(seq_no, None)
        if pending is None:
            return
        self._drop_settled_timers()
        if isinstance(pending, _Relay):
            self._send(pending.requester, [codec.encode_ack(pending.requester_seq_no)], effects)
            return
        if src == pending.target_address:
            # A direct ack measures the round trip; a relayed one comes from the relay.
            rtt = now - pending.sent
            self._rtt.sample(rtt)
            own = self._target_rtt.get(pending.target)
            if own is None:
                own = self._target_rtt[pending.target] = RttEstimator()
            own.sample(rtt)
        if not pending.suspected:
            self._awareness.apply_delta(-1)
            return
        # We accused a member that answers. Lifeguard's reading, as for a failed probe:
        # if the relays had told us by then that the target was silent to them too, the
        # target is slow; each nack missing by then suggests that we are the slow one.
        self.stats.late_acks += 1
        if pending.expected_nacks > 0:
            self._awareness.apply_delta(max(pending.expected_nacks - pending.nacks_at_suspicion, 0))
        else:
            self._awareness.apply_delta(1)

    def _ping_complete(self, src: Address, ack: pb.Ack, now: float, effects: list[Effect]) -> None:
        """memberlist's NotifyPingComplete: only the answer to our own direct ping, from
        the address we pinged, measures a round trip to the member that sent the ack."""
        pending = self._pending.get(ack.seq_no)
        if isinstance(pending, _Probe) and src == pending.target_address:
            effects.append(PingComplete(pending.target, now - pending.sent, ack.coordinate))

    def _on_indirect_ping(
        self, src: Address, request: pb.IndirectPing, now: float, effects: list[Effect]
    ) -> None:
        target = codec.decode_address(request.target_address)
        if not valid_name(request.target) or target is None:
            self.stats.drop("invalid_message")
            return
        if len(self._pending) >= 4 * self.config.max_broadcast_queue_depth:
            self.stats.drop("relay_limit")
            return
        seq_no = self._next_seq_no()
        # The nack follows our own probe timeout, so it reaches the requester within its
        # interval; an ack is relayed until memberlist's ProbeTimeout, even after the nack.
        nack_at = now + min(self._probe_timeout(request.target), self.config.probe_timeout)
        relay = _Relay(
            seq_no, src, request.seq_no, request.nack, nack_at, now + self.config.probe_timeout
        )
        self._pending[seq_no] = relay
        self._arm(relay.nack_at, seq_no)
        if relay.timeout_at != relay.nack_at:
            self._arm(relay.timeout_at, seq_no)
        self._send(target, [codec.encode_ping(seq_no, request.target, self.name)], effects)

    # ------------------------------------------------------------------ state rules

    def _valid_name(self, name: str) -> bool:
        # The members' naming rule (controlplane.gossip.names): a name reaches member lists,
        # logs and the snapshot file, so none may carry a space, newline or control.
        return valid_name(name)

    def _believable(self, state: NodeState, incarnation: int) -> bool:
        """An accusation or announcement about a member known alive or suspect moves
        its incarnation by at most MAX_INCARNATION_STEP (gossip/incarnation.py);
        anything further is counted and dropped."""
        if state.status.dead_or_left or within_step(incarnation, state.incarnation):
            return True
        self.stats.drop("incarnation_step")
        return False

    def _alive_is_news(self, state: NodeState, incarnation: int, is_me: bool) -> bool:
        """An alive message about a member known at this address changes something when
        it is believable and newer; about ourselves, when not older (an equal one with
        other metadata is refuted)."""
        if not self._believable(state, incarnation):
            return False
        if is_me:
            return not older(incarnation, state.incarnation)
        return newer(incarnation, state.incarnation)

    def _on_alive(
        self,
        incarnation: int,
        name: str,
        address: Address,
        meta: bytes,
        now: float,
        effects: list[Effect],
    ) -> None:
        if (
            incarnation == 0
            or not self._valid_name(name)
            or len(meta) > self.config.max_meta_size
            or not address[0]
            or not 0 < address[1] < 65536
        ):
            self.stats.drop("invalid_message")
            return
        state = self._nodes.get(name)
        if state is self._me and self._left:
            # After a graceful leave we stay gone: refuting would announce us alive again
            # (memberlist aliveNode returns early when hasLeft).
            return
        replaces_address = False
        fresh = state is None
        if state is None:
            if len(self._nodes) >= self.config.max_nodes:
                self.stats.drop("node_limit")
                return
            # A new member enters as dead with incarnation 0, so any alive replaces it.
            state = NodeState(name, address, meta, 0, NodeStatus.DEAD, now)
            self._add_node(state)
        elif state.address != address:
            reclaim = self.config.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and now - state.state_change > reclaim
            if state.status is NodeStatus.LEFT or (state.status is NodeStatus.DEAD and can_reclaim):
                replaces_address = True
            else:
                self.stats.drop("address_conflict")
                if state is self._me:
                    # memberlist calls its conflict delegate; Serf then decides who goes.
                    effects.append(NameConflict(name, address))
                return
        is_me = state is self._me
        if not (fresh or replaces_address or self._alive_is_news(state, incarnation, is_me)):
            return
        self._suspicions.pop(name, None)
        old_status = state.status
        old_meta = state.meta
        if is_me:
            if incarnation == state.incarnation and meta == state.meta:
                return
            self._refute(state, incarnation)
            return
        self._queue.queue(codec.encode_alive(incarnation, name, address, meta), name)
        state.incarnation = incarnation
        state.meta = meta
        state.address = address
        if state.status is not NodeStatus.ALIVE:
            state.status = NodeStatus.ALIVE
            state.state_change = now
        if old_status.dead_or_left:
            effects.append(MemberJoined(state.snapshot()))
        elif old_meta != meta:
            effects.append(MemberUpdated(state.snapshot()))

    def _on_suspect(
        self, incarnation: int, name: str, accuser: str, now: float, effects: list[Effect]
    ) -> None:
        if not (self._valid_name(name) and self._valid_name(accuser)):
            self.stats.drop("invalid_name")
            return
        state = self._nodes.get(name)
        if state is None or older(incarnation, state.incarnation):
            return
        if not self._believable(state, incarnation):
            return
        suspicion = self._suspicions.get(name)
        if suspicion is not None and not newer(incarnation, suspicion.incarnation):
            if suspicion.confirm(accuser):
                self._queue.queue(codec.encode_suspect(incarnation, name, accuser), name)
                self._push_suspicion(suspicion.deadline, name)
            return
        if suspicion is not None:
            # Beyond memberlist, which counts this as a confirmation of the suspicion it holds:
            # a suspicion at a higher incarnation means the member refuted ours (its alive
            # message missed us) and was suspected again. Ours is void; the new one starts now.
            del self._suspicions[name]
        elif state.status is not NodeStatus.ALIVE:
            return
        if state is self._me:
            self._refute(state, incarnation)
            return
        self._queue.queue(codec.encode_suspect(incarnation, name, accuser), name)
        state.incarnation = incarnation
        state.status = NodeStatus.SUSPECT
        state.state_change = now
        self.stats.suspicions_raised += 1
        n = self._num_nodes()
        expected = expected_confirmations(self.config.suspicion_mult, n)
        minimum, maximum = suspicion_bounds(
            self.config.suspicion_mult,
            self.config.suspicion_max_timeout_mult,
            n,
            self.config.probe_interval,
        )
        suspicion = Suspicion(accuser, expected, minimum, maximum, now, incarnation)
        self._suspicions[name] = suspicion
        self._push_suspicion(suspicion.deadline, name)
        if accuser != self.name and self.config.suspicion_probes and not self._left:
            # Probe the suspect now rather than at our turn: if it is dead, our confirmation
            # arrives within one interval; if not, it hears of the suspicion from us.
            chance = suspicion_probe_chance(expected, n)
            if chance > 0 and self._rng.random() < chance:
                self.stats.suspicion_probes_sent += 1
                self._probe_node(state, now, effects, careful=True)

    def _push_suspicion(self, deadline: float, name: str) -> None:
        self._heap_counter += 1
        heapq.heappush(self._suspicion_heap, (deadline, self._heap_counter, name))
        if self.config.suspicion_probes and self.config.buddy_system:
            # The last check before declaring (see _check_suspect), timed to be answered
            # by the deadline.
            interval = self._awareness.scale_timeout(self.config.probe_interval)
            check_at = deadline - probe_suspect_after(self._probe_timeout(name), interval)
            self._suspicions[name].check_at = check_at
            self._heap_counter += 1
            heapq.heappush(self._suspicion_heap, (check_at, self._heap_counter, name))

    def _expire_suspicions(self, now: float, effects: list[Effect]) -> None:
        heap = self._suspicion_heap
        while heap and heap[0][0] <= now:
            _deadline, _counter, name = heapq.heappop(heap)
            suspicion = self._suspicions.get(name)
            if suspicion is None:
                continue
            if suspicion.deadline > now:
                if not suspicion.checked and suspicion.check_at <= now:
                    suspicion.checked = True
                    self._check_suspect(name, effects)
                continue
            del self._suspicions[name]
            state = self._nodes.get(name)
            if (
                state is not None
                and state.status is NodeStatus.SUSPECT
                and state.state_change == suspicion.start
            ):
                self.stats.members_declared_dead += 1
                self._on_dead(state.incarnation, name, self.name, now, effects)
                self._encode_if_changed(name)

    def _check_suspect(self, name: str, effects: list[Effect]) -> None:
        """Beyond memberlist: ping a suspect once more just before declaring it dead, the
        suspicion first. A live suspect refutes and its ack brings the refutation back (or
        it sees an accusation older than its incarnation and answers with its alive
        message): a member that missed the refutation's broadcast does not declare a live
        member dead on its own. A dead one answers nothing; nothing waits for it."""
        state = self._nodes.get(name)
        if state is None or state is self._me or state.status is not NodeStatus.SUSPECT:
            return
        messages = [
            codec.encode_suspect(state.incarnation, name, self.name),
            codec.encode_ping(self._next_seq_no(), name, self.name),
        ]
        # Sent raw, like any probe of a suspect: no broadcast spends a transmit on it.
        self._emit(state.address, messages, effects)

    def _on_dead(
        self, incarnation: int, name: str, accuser: str, now: float, effects: list[Effect]
    ) -> None:
        if not (self._valid_name(name) and self._valid_name(accuser)):
            self.stats.drop("invalid_name")
            return
        state = self._nodes.get(name)
        if state is None or older(incarnation, state.incarnation):
            return
        if not self._believable(state, incarnation):
            return
        self._suspicions.pop(name, None)
        if state.status.dead_or_left:
            return
        if state is self._me and not self._left:
            self._refute(state, incarnation)
            return
        self._queue.queue(codec.encode_dead(incarnation, name, accuser), name)
        state.incarnation = incarnation
        left = name == accuser
        state.status = NodeStatus.LEFT if left else NodeStatus.DEAD
        state.state_change = now
        if state is not self._me:
            effects.append(MemberLeft(state.snapshot(), left))

    def _refute(self, me: NodeState, accused: int) -> None:
        """Out-bid an accusation about ourselves with a higher incarnation."""
        # On the circle there is always a newer incarnation: no accusation is final.
        me.incarnation = refutation(me.incarnation, accused)
        self.stats.refutations += 1
        # Lifeguard: being accused hints that we are the slow one.
        self._awareness.apply_delta(1)
        self._queue.queue(codec.encode_alive(me.incarnation, me.name, me.address, me.meta), me.name)

    # ------------------------------------------------------------------ push-pull

    def _local_state(self, join: bool) -> bytes:
        # The message is assembled from each record's cached encoding: protobuf's wire
        # format is the concatenation of its fields, so a state of thousands of members
        # costs one join instead of thousands of message builds.
        parts = [
            pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION, join=join).SerializeToString()
        ]
        encode = self._record_field
        parts.extend([node.encoded or encode(node) for node in self._node_list])
        if self._user_state is not None:
            user_state = self._user_state(join)
            if user_state:
                parts.append(codec.length_delimited_field(_USER_STATE_FIELD, user_state))
        return codec.seal(self._header, b"".join(parts), self._keyring)

    def _encode_if_changed(self, name: str) -> None:
        """Re-encodes the member's push-pull record now if a message changed it: one
        record per change as changes arrive, rather than every record changed since
        the last exchange at once inside the next one (thousands under churn)."""
        node = self._nodes.get(name)
        if node is not None and node.encoded is None:
            self._record_field(node)

    def _record_field(self, node: NodeState) -> bytes:
        if node.encoded is not None:
            return node.encoded
        shared = self._shared_records
        key = (node.name, node.address, node.meta, node.incarnation, node.status)
        encoded = None if shared is None else shared.get(key)
        if encoded is None:
            record = codec.encode_member_state(
                node.name, node.address, node.meta, node.incarnation, int(node.status)
            )
            encoded = codec.length_delimited_field(_MEMBERS_FIELD, record)
            if shared is not None:
                shared[key] = encoded
        node.encoded = encoded
        return encoded

    def _open_push_pull(self, data: bytes) -> pb.PushPullState | None:
        self._last_reject = ""
        if len(data) > self.config.max_push_pull_size:
            self._last_reject = "oversized"
        else:
            try:
                body = codec.open_frame(data, self._label, self._keyring)
            except codec.FrameError as error:
                self._last_reject = error.reason
            else:
                state = codec.parse(pb.PushPullState, body)
                if state is None:
                    self._last_reject = "decode"
                elif state.protocol_version != codec.PROTOCOL_VERSION:
                    self._last_reject = "protocol_version"
                elif len(state.members) > self.config.max_nodes:
                    # More records than this member would ever keep: not a cluster it joins.
                    self._last_reject = "too_many_members"
                else:
                    return state
        self.stats.drop("push_pull_" + self._last_reject)
        return None

    def _merge_record(self, record: pb.MemberState, now: float, effects: list[Effect]) -> None:
        status = record.status
        if status == pb.MEMBER_STATUS_ALIVE:
            existing = self._nodes.get(record.name)
            # Fast path for anti-entropy in a converged cluster: nothing new. It compares the
            # wire address with the known (validated, canonical) one, so most records of a
            # large state need no parsing. A new address is not "nothing new": a left
            # member's name may be reused at any incarnation.
            wire_address = record.address
            if (
                existing is not None
                and existing is not self._me
                and not newer(record.incarnation, existing.incarnation)
                and existing.address[1] == wire_address.port
                and existing.address[0] == wire_address.host
            ):
                return
            address = codec.decode_address(wire_address)
            if address is None:
                self.stats.drop("invalid_message")
                return
            self._on_alive(record.incarnation, record.name, address, record.meta, now, effects)
        elif status == pb.MEMBER_STATUS_LEFT:
            self._on_dead(record.incarnation, record.name, record.name, now, effects)
        elif status in (pb.MEMBER_STATUS_DEAD, pb.MEMBER_STATUS_SUSPECT):
            # A remote death is only a suspicion here: the member gets its chance to refute.
            self._on_suspect(record.incarnation, record.name, self.name, now, effects)
        else:
            self.stats.drop("invalid_message")

    def _periodic_push_pull(self, now: float, effects: list[Effect]) -> None:
        peers = self._random_nodes(1, "", alive_only=True, now=now)
        if not peers:
            return
        self.stats.push_pulls_started += 1
        effects.append(StartPushPull(peers[0].address, self._local_state(join=False), False))

    # ------------------------------------------------------------------ healing and reaping

    def mark_left(self, name: str) -> bool:
        """Records that a dead member was made to leave (Serf's RemoveFailedNode), so it
        is no longer retried by reconnect. Nothing is gossiped: the layer above
        broadcasts its own leave intent. True if the member was dead and is now left."""
        node = self._nodes.get(name)
        if node is None or node.status is not NodeStatus.DEAD or name == self.name:
            return False
        node.status = NodeStatus.LEFT
        return True

    def _reconnect(self, now: float, effects: list[Effect]) -> None:
        """Serf-style reconnect, extended to seeds: push-pull with one failed member or seed."""
        timeout = self.config.reconnect_timeout
        candidates: list[Address] = []
        reachable: set[Address] = set()
        alive = 0
        for node in self._node_list:
            if node.status is NodeStatus.DEAD:
                if now - node.state_change <= timeout:
                    candidates.append(node.address)
            elif node.status is not NodeStatus.LEFT:
                alive += 1
                reachable.add(node.address)
        if now <= self._seeds_until:
            candidates.extend(seed for seed in self._seeds if seed not in reachable)
        if not candidates:
            return
        # Serf reconnect: attempt with probability failed / alive, so a large healthy
        # cluster does not hammer one failed member from every node.
        if self._rng.random() > len(candidates) / max(alive, 1):
            return
        dest = candidates[self._rng.randrange(len(candidates))]
        self.stats.reconnect_attempts += 1
        self.stats.push_pulls_started += 1
        effects.append(StartPushPull(dest, self._local_state(join=False), False))

    def _reap(self, now: float, effects: list[Effect]) -> None:
        horizon = self.config.dead_node_reap_time
        doomed = [
            node
            for node in self._node_list
            if node.status.dead_or_left and now - node.state_change > horizon
        ]
        if not doomed:
            return
        gone = {id(node) for node in doomed}
        self._node_list = [node for node in self._node_list if id(node) not in gone]
        self._probe_order = [node for node in self._probe_order if id(node) not in gone]
        self._probe_index = min(self._probe_index, len(self._probe_order))
        for node in doomed:
            del self._nodes[node.name]
            self._target_rtt.pop(node.name, None)
            self._queue.invalidate(node.name)
            self.stats.members_reaped += 1
            effects.append(MemberReaped(node.snapshot()))
