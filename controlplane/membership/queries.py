"""Serf queries (sans-IO): ask members, collect their acks and responses within a deadline.

:class:`Queries` owns the bookkeeping of ``serf/query.go`` and the query parts of
``serf/serf.go`` (Query, handleQuery, handleQueryResponse, relayResponse) for one
member, on top of its :class:`Membership` layer, which it only reads:

* the asking side stamps a query with the query Lamport clock and a random id,
  returns it as a :class:`BroadcastQuery` effect (the shell sends it on gossip
  channel ``query``) and handles it locally, as Serf does; it then collects acks
  and responses, one of each per member, until the deadline, when it reports
  :class:`QueryDone`;
* every member that receives a query drops it if it saw it already (Serf's
  query buffer) or if it is malformed; when the filters match it, it sends an ack
  at once if asked, and reports :class:`QueryReceived` upward; :meth:`respond`
  sends the one response;
* acks and responses are :class:`SendReply` effects (direct datagrams to the
  asking member's known address) plus ``relay_factor`` copies through random
  alive members, which forward them (:meth:`receive_reply`).

Time comes in as ``now``, randomness from the injected ``random.Random``. Every
value from the wire is bounded; see docs/queries.md for the limits.
"""

from __future__ import annotations

import math
import random
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controlplane.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from controlplane.gossip import codec
from controlplane.gossip.state import Address
from controlplane.membership.events import MemberStatus
from controlplane.membership.lamport import MAX_LAMPORT_CATCH_UP, LamportClock, within_reach
from controlplane.membership.validation import (
    check_query_name,
    compile_pattern,
    valid_node_name,
    valid_query_name,
)
from controlplane.wire.v1 import query_pb2 as wire

if TYPE_CHECKING:
    from controlplane.membership.layer import Membership

CHANNEL = "query"
# serf config.go QuerySizeLimit 1024: the encoded query (name, filters and payload).
QUERY_SIZE_LIMIT = 1024
# serf config.go QueryResponseSizeLimit 1024: one response payload.
QUERY_RESPONSE_SIZE_LIMIT = 1024
# serf config.go QueryBuffer 512: query Lamport times remembered for de-duplication.
QUERY_BUFFER_SIZE = 512
# Queries remembered per Lamport time (QueryBuffer): each asker ticks the clock once
# per query, so many queries of one time come only from concurrent askers.
QUERIES_PER_LAMPORT_TIME = 64
# serf config.go QueryTimeoutMult 16 (DefaultQueryTimeout).
QUERY_TIMEOUT_MULT = 16
# Serf accepts any relay factor; each relay is one more datagram per answer, and
# Serf's documentation calls values above 5 useless: the bound of this API.
MAX_RELAY_FACTOR = 5
# A query stays open at most this long (Serf has no bound; the outstanding table must).
MAX_TIMEOUT = 300.0
# Queries this member asked that are still open (the API refuses more).
MAX_OUTSTANDING = 64
# Queries received and not yet answered or expired (more are answered with the ack only).
MAX_RECEIVED = 256
MAX_FILTER_NODES = 64
MAX_FILTER_TAGS = 16
# The length cap of the API's other filters (api/membership.py PATTERN_MAX).
MAX_REGEX_LENGTH = 256
# Gossip delivers a broadcast to each member with high probability, not certainty (in
# a small cluster busy with other broadcasts, a few members in a hundred miss one).
# Serf sends a query once; here the asker gossips it again at these fractions of its
# timeout. Members handle each query once (the query buffer), so a copy costs only
# its gossip.
RESEND_FRACTIONS = (0.25, 0.5)
# Relayed answers already forwarded, remembered to drop duplicates.
RELAY_DEDUPE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class QueryParams:
    """One query to ask (serf QueryParam plus the name and payload)."""

    name: str
    payload: bytes = b""
    filter_nodes: tuple[str, ...] = ()
    filter_tags: Mapping[str, str] = field(default_factory=dict)
    request_ack: bool = False
    relay_factor: int = 0
    # Seconds; 0 takes default_timeout.
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class BroadcastQuery:
    """Effect: gossip ``data`` (a QueryMessage) to every member on channel ``query``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SendReply:
    """Effect: send ``data`` (a QueryDatagram) to ``address`` as a direct datagram."""

    address: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class QueryReceived:
    """Effect: a query for this member, to hand to its handlers; answer with respond(handle)."""

    handle: int
    name: str
    payload: bytes
    origin: str
    lamport_time: int
    deadline: float


@dataclass(frozen=True, slots=True)
class QueryAck:
    """Effect: a member acknowledged a query this member asked (once per member)."""

    query_id: int
    member: str


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """Effect: a member's response to a query this member asked (once per member)."""

    query_id: int
    member: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryDone:
    """Effect: a query this member asked reached its deadline; nothing more comes."""

    query_id: int
    acks: int
    responses: int


Effect = BroadcastQuery | SendReply | QueryReceived | QueryAck | QueryResponse | QueryDone


def default_timeout(gossip_interval: float, members: int, mult: int = QUERY_TIMEOUT_MULT) -> float:
    """serf.go DefaultQueryTimeout: GossipInterval * QueryTimeoutMult * ceil(log10(N + 1))."""
    return gossip_interval * mult * math.ceil(math.log10(members + 1))


def check_tag_regex(expression: str, field_name: str = "filter_tags") -> Any:
    """A tag filter compiled with RE2 (Go's regexp syntax, as Serf; linear-time
    matching, so a hostile expression cannot stall the loop); match it against the
    tag value's UTF-8 bytes."""
    return compile_pattern(field_name, expression, MAX_REGEX_LENGTH)


def check_params(params: QueryParams, timeout_default: float) -> wire.QueryMessage:
    """The QueryMessage (without time, id and origin) for ``params``; InvalidArgument
    naming the field and the limit otherwise."""
    check_query_name(params.name)
    if len(params.filter_nodes) > MAX_FILTER_NODES:
        raise InvalidArgument.for_field("filter_nodes", f"at most {MAX_FILTER_NODES} names")
    for node in params.filter_nodes:
        if not valid_node_name(node):
            raise InvalidArgument.for_field("filter_nodes", f"{node!r:.160} is not a node name")
    if len(params.filter_tags) > MAX_FILTER_TAGS:
        raise InvalidArgument.for_field("filter_tags", f"at most {MAX_FILTER_TAGS} tags")
    for key, expression in params.filter_tags.items():
        if not key or len(key) > MAX_REGEX_LENGTH:
            raise InvalidArgument.for_field(
                "filter_tags", f"tag names are 1 to {MAX_REGEX_LENGTH} characters"
            )
        check_tag_regex(expression)
    if not 0 <= params.relay_factor <= MAX_RELAY_FACTOR:
        raise InvalidArgument.for_field(
            "relay_factor", f"must be 0 to {MAX_RELAY_FACTOR}, got {params.relay_factor}"
        )
    timeout = params.timeout or timeout_default
    if not 0 < timeout <= MAX_TIMEOUT or math.isnan(timeout):
        raise InvalidArgument.for_field(
            "timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g} s, got {params.timeout}"
        )
    return wire.QueryMessage(
        filter_nodes=params.filter_nodes,
        filter_tags=dict(params.filter_tags),
        request_ack=params.request_ack,
        relay_factor=params.relay_factor,
        timeout_ms=max(1, round(timeout * 1000)),
        name=params.name,
        payload=params.payload,
    )


def check_response(payload: bytes, field_name: str = "payload") -> None:
    if len(payload) > QUERY_RESPONSE_SIZE_LIMIT:
        raise InvalidArgument.for_field(
            field_name,
            f"response is {len(payload)} bytes, the limit is {QUERY_RESPONSE_SIZE_LIMIT} bytes",
        )


class QueryBuffer:
    """serf.go queryBuffer: a ring of QUERY_BUFFER_SIZE slots by Lamport time, each
    holding the ids of the queries of that time, so each query is handled once.

    Beyond Serf, a slot holds at most QUERIES_PER_LAMPORT_TIME ids: a sender that keeps
    stamping queries with one old time would otherwise grow its slot without bound.
    Queries past the bound are refused, as a repeat is."""

    def __init__(self, size: int = QUERY_BUFFER_SIZE) -> None:
        self.size = size
        self._slots: list[tuple[int, set[int]] | None] = [None] * size

    def admit(self, ltime: int, query_id: int, clock_time: int) -> bool:
        """True when the query is new and recent enough (serf.go handleQuery)."""
        if clock_time > self.size and ltime < clock_time - self.size:
            return False
        index = ltime % self.size
        slot = self._slots[index]
        if slot is not None and slot[0] == ltime:
            if query_id in slot[1] or len(slot[1]) >= QUERIES_PER_LAMPORT_TIME:
                return False
            slot[1].add(query_id)
        else:
            self._slots[index] = (ltime, {query_id})
        return True


@dataclass(slots=True, eq=False)
class _Asked:
    """A query this member asked (serf QueryResponse)."""

    lamport_time: int
    deadline: float
    # The encoded query and when to gossip it again (see RESEND_FRACTIONS).
    data: bytes = b""
    resends: list[float] = field(default_factory=list)
    acks: set[str] = field(default_factory=set)
    responses: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class _Received:
    """A query this member may still answer."""

    query_id: int
    lamport_time: int
    origin: str
    relay_factor: int
    deadline: float


@dataclass(slots=True)
class QueryStats:
    """Counters for metrics and tests."""

    asked: int = 0
    # New queries that matched this member's filters, and those that did not.
    received: int = 0
    filtered: int = 0
    duplicates: int = 0
    # Acks and responses collected for queries this member asked.
    acks: int = 0
    responses: int = 0
    # Answers forwarded for other members (relays).
    relayed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


class Queries:
    """One member's queries, asked and received; see the module docstring."""

    def __init__(self, layer: Membership, rng: random.Random) -> None:
        self._layer = layer
        self._rng = rng
        self._clock = LamportClock()
        # serf.go Create: clocks start at 1.
        self._clock.increment()
        self._buffer = QueryBuffer()
        self._asked: dict[int, _Asked] = {}
        self._received: OrderedDict[int, _Received] = OrderedDict()
        self._next_handle = 1
        self._relayed: OrderedDict[tuple[str, int, str, bool], None] = OrderedDict()
        self.stats = QueryStats()

    @property
    def lamport_time(self) -> int:
        return self._clock.time()

    def local_state(self) -> bytes:
        """This member's part of a push-pull state on channel ``query``: its clock."""
        return wire.QueryState(lamport_time=self._clock.time()).SerializeToString()

    def merge_state(self, data: bytes) -> None:
        """A peer's query state (serf delegate.go MergeRemoteState: queryClock.Witness(
        QueryLTime - 1)); a clock beyond the catch-up bound of push-pull is not believed."""
        state = codec.parse(wire.QueryState, data)
        if state is None:
            self.stats.drop("state_decode")
        elif not within_reach(state.lamport_time, self._clock.time(), MAX_LAMPORT_CATCH_UP):
            self.stats.drop("lamport_out_of_range")
        elif state.lamport_time > 0:
            self._clock.witness(state.lamport_time - 1)

    def outstanding(self) -> int:
        return len(self._asked)

    def default_timeout(self) -> float:
        return default_timeout(self._layer.node.config.gossip_interval, self._layer.alive_count())

    def next_deadline(self) -> float:
        deadlines = [
            asked.resends[0] if asked.resends else asked.deadline for asked in self._asked.values()
        ]
        if self._received:
            deadlines.append(min(r.deadline for r in self._received.values()))
        return min(deadlines, default=math.inf)

    # ------------------------------------------------------------------ asking

    def ask(self, params: QueryParams, now: float) -> tuple[int, float, list[Effect]]:
        """Start a query (serf.go Query): returns its id, its deadline and the effects
        (the broadcast, then this member's own handling of it)."""
        message = check_params(params, self.default_timeout())
        if len(self._asked) >= MAX_OUTSTANDING:
            raise ResourceExhausted(
                f"{MAX_OUTSTANDING} queries are open on this member; wait for one to finish"
            )
        query_id = self._rng.getrandbits(64)
        while query_id in self._asked:
            query_id = self._rng.getrandbits(64)
        message.lamport_time = self._clock.time()
        message.id = query_id
        message.origin = self._layer.name
        data = message.SerializeToString()
        if len(data) > QUERY_SIZE_LIMIT:
            raise InvalidArgument.for_field(
                "payload",
                f"the query is {len(data)} bytes encoded (name, filters and payload), "
                f"the limit is {QUERY_SIZE_LIMIT} bytes",
            )
        self._clock.increment()
        deadline = now + message.timeout_ms / 1000
        timeout = deadline - now
        resends = [now + timeout * fraction for fraction in RESEND_FRACTIONS]
        self._asked[query_id] = _Asked(message.lamport_time, deadline, data, resends)
        self.stats.asked += 1
        out: list[Effect] = [BroadcastQuery(data)]
        # serf.go Query processes the query locally too: the asker may be one of the members asked.
        self._handle(message, now, out)
        return query_id, deadline, out

    def lamport_time_of(self, query_id: int) -> int | None:
        """The Lamport time of an open query this member asked."""
        asked = self._asked.get(query_id)
        return None if asked is None else asked.lamport_time

    def cancel(self, query_id: int) -> None:
        """Stop collecting for a query (its caller went away); no QueryDone follows."""
        self._asked.pop(query_id, None)

    # ---------------------------------------------------------------- receiving

    def receive_query(self, data: bytes, now: float) -> list[Effect]:
        """A QueryMessage from gossip (never raises for bad input)."""
        message = codec.parse(wire.QueryMessage, data)
        out: list[Effect] = []
        if message is None:
            self.stats.drop("decode")
            return out
        if not within_reach(message.lamport_time, self._clock.time()):
            self.stats.drop("lamport_out_of_range")
            return out
        if (
            len(data) > QUERY_SIZE_LIMIT
            or not valid_node_name(message.origin)
            or not valid_query_name(message.name)
            or message.relay_factor > MAX_RELAY_FACTOR
            or not 0 < message.timeout_ms <= MAX_TIMEOUT * 1000
            or len(message.filter_nodes) > MAX_FILTER_NODES
            or len(message.filter_tags) > MAX_FILTER_TAGS
        ):
            self.stats.drop("invalid")
            return out
        self._handle(message, now, out)
        return out

    def _handle(self, message: wire.QueryMessage, now: float, out: list[Effect]) -> None:
        """serf.go handleQuery: de-duplicate, filter, ack, deliver."""
        self._clock.witness(message.lamport_time)
        if not self._buffer.admit(message.lamport_time, message.id, self._clock.time()):
            self.stats.duplicates += 1
            return
        try:
            matches = self._should_process(message)
        except InvalidArgument:
            self.stats.drop("bad_filter")
            return
        if not matches:
            self.stats.filtered += 1
            return
        self.stats.received += 1
        deadline = now + message.timeout_ms / 1000
        received = _Received(
            message.id, message.lamport_time, message.origin, message.relay_factor, deadline
        )
        if message.request_ack:
            self._reply(received, ack=True, payload=b"", now=now, out=out)
        if len(self._received) >= MAX_RECEIVED:
            self.stats.drop("too_many_open")
            return
        handle = self._next_handle
        self._next_handle += 1
        self._received[handle] = received
        out.append(
            QueryReceived(
                handle,
                message.name,
                message.payload,
                message.origin,
                message.lamport_time,
                deadline,
            )
        )

    def _should_process(self, message: wire.QueryMessage) -> bool:
        """serf/query.go shouldProcessQuery: named nodes, then every tag expression
        searched in the tag's value (regexp.MatchString: anywhere in the value)."""
        if message.filter_nodes and self._layer.name not in message.filter_nodes:
            return False
        tags = self._layer.local_member().tags
        if any(key not in tags for key in message.filter_tags):
            # Before any expression is compiled: compiling costs, matching does not.
            return False
        for key, expression in message.filter_tags.items():
            pattern = check_tag_regex(expression)
            value = tags.get(key)
            if value is None or pattern.search(value.encode()) is None:
                return False
        return True

    # -------------------------------------------------------------- answering

    def respond(self, handle: int, payload: bytes, now: float) -> list[Effect]:
        """The one response to a received query (serf QueryResponse.Respond)."""
        check_response(payload)
        received = self._received.pop(handle, None)
        if received is None:
            raise FailedPrecondition("the query is unknown, already answered or finished")
        if now >= received.deadline:
            raise FailedPrecondition("the query is finished: its timeout passed")
        out: list[Effect] = []
        self._reply(received, ack=False, payload=payload, now=now, out=out)
        return out

    def _reply(
        self, received: _Received, *, ack: bool, payload: bytes, now: float, out: list[Effect]
    ) -> None:
        reply = wire.QueryReply(
            lamport_time=received.lamport_time,
            id=received.query_id,
            origin=received.origin,
            ack=ack,
            payload=payload,
        )
        setattr(reply, "from", self._layer.name)
        if received.origin == self._layer.name:
            self._collect(reply, now, out)
            return
        origin = self._layer.member(received.origin)
        if origin is None:
            self.stats.drop("unknown_origin")
            return
        out.append(SendReply(origin.address, wire.QueryDatagram(reply=reply).SerializeToString()))
        # serf/query.go relayResponse: copies through relay_factor random alive members.
        if received.relay_factor:
            relay = wire.QueryDatagram(relay=reply).SerializeToString()
            # Random alive members in O(relay_factor): never a walk of the whole fleet.
            for address in self._layer.random_alive(received.relay_factor, received.origin, now):
                out.append(SendReply(address, relay))

    def receive_reply(self, data: bytes, now: float) -> list[Effect]:
        """A QueryDatagram from a direct datagram (never raises for bad input)."""
        datagram = codec.parse(wire.QueryDatagram, data)
        out: list[Effect] = []
        if datagram is None or datagram.WhichOneof("body") is None:
            self.stats.drop("decode")
            return out
        relay = datagram.HasField("relay")
        reply = datagram.relay if relay else datagram.reply
        responder = getattr(reply, "from")
        if (
            not valid_node_name(responder)
            or not valid_node_name(reply.origin)
            or len(reply.payload) > QUERY_RESPONSE_SIZE_LIMIT
        ):
            self.stats.drop("invalid")
            return out
        if not relay:
            if reply.origin == self._layer.name:
                self._collect(reply, now, out)
            else:
                self.stats.drop("not_ours")
            return out
        if reply.origin == self._layer.name:
            # A relay chose the asker itself: collect, as a direct reply.
            self._collect(reply, now, out)
            return out
        key = (reply.origin, reply.id, responder, reply.ack)
        if key in self._relayed:
            self.stats.duplicates += 1
            return out
        self._relayed[key] = None
        if len(self._relayed) > RELAY_DEDUPE_SIZE:
            self._relayed.popitem(last=False)
        origin = self._layer.member(reply.origin)
        if origin is None or origin.status is not MemberStatus.ALIVE:
            self.stats.drop("unknown_origin")
            return out
        self.stats.relayed += 1
        out.append(SendReply(origin.address, wire.QueryDatagram(reply=reply).SerializeToString()))
        return out

    def _collect(self, reply: wire.QueryReply, now: float, out: list[Effect]) -> None:
        """serf.go handleQueryResponse: one ack and one response per member, until the deadline."""
        asked = self._asked.get(reply.id)
        if asked is None or asked.lamport_time != reply.lamport_time or now >= asked.deadline:
            self.stats.drop("late_or_unknown")
            return
        responder = getattr(reply, "from")
        if self._layer.member(responder) is None:
            # Only members answer: a stranger who saw the query's id cannot fill the
            # caller's stream with answers from made-up names.
            self.stats.drop("unknown_responder")
            return
        if reply.ack:
            if responder in asked.acks:
                self.stats.duplicates += 1
                return
            asked.acks.add(responder)
            self.stats.acks += 1
            out.append(QueryAck(reply.id, responder))
        else:
            if responder in asked.responses:
                self.stats.duplicates += 1
                return
            asked.responses.add(responder)
            self.stats.responses += 1
            out.append(QueryResponse(reply.id, responder, reply.payload))

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Effect]:
        """Gossip open queries again when due, finish those whose deadline passed, forget
        unanswered received ones."""
        out: list[Effect] = []
        for query_id, asked in list(self._asked.items()):
            if asked.resends and now >= asked.resends[0]:
                while asked.resends and now >= asked.resends[0]:
                    asked.resends.pop(0)
                if now < asked.deadline:
                    out.append(BroadcastQuery(asked.data))
            if now >= asked.deadline:
                del self._asked[query_id]
                out.append(QueryDone(query_id, len(asked.acks), len(asked.responses)))
        for handle, received in list(self._received.items()):
            if now >= received.deadline:
                del self._received[handle]
        return out
