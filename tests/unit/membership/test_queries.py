"""Serf queries, pure parts: timeout formula, filters, limits, the query buffer,
one ack and one response per member, the deadline."""

from __future__ import annotations

import random
import time

import pytest

from controlplane.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from controlplane.gossip import GossipConfig, codec
from controlplane.membership import Membership, MembershipConfig
from controlplane.membership.queries import (
    MAX_OUTSTANDING,
    QUERIES_PER_LAMPORT_TIME,
    QUERY_RESPONSE_SIZE_LIMIT,
    BroadcastQuery,
    Queries,
    QueryAck,
    QueryBuffer,
    QueryDone,
    QueryParams,
    QueryReceived,
    QueryResponse,
    SendReply,
    default_timeout,
)
from controlplane.wire.v1 import query_pb2 as wire
from tests.unit.membership.helpers import alive, receive


def make(name: str = "zip", tags: dict[str, str] | None = None) -> tuple[Membership, Queries]:
    layer = Membership(
        GossipConfig.lan(),
        MembershipConfig(),
        name,
        ("10.0.0.1", 7946),
        tags=tags or {},
        rng=random.Random(1),
        now=0.0,
    )
    return layer, Queries(layer, random.Random(2))


def query(**fields: object) -> bytes:
    base: dict[str, object] = {
        "lamport_time": 1,
        "id": 7,
        "origin": "zip",
        "name": "q",
        "timeout_ms": 1000,
    }
    base.update(fields)
    return wire.QueryMessage(**base).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("interval", "members", "expected"),
    [
        # serf query_test.go TestDefaultQuery: one member -> GossipInterval * QueryTimeoutMult.
        (0.2, 1, 0.2 * 16),
        (0.2, 9, 0.2 * 16),
        (0.2, 10, 0.2 * 16 * 2),
        (0.2, 99, 0.2 * 16 * 2),
        (0.2, 100, 0.2 * 16 * 3),
        (0.5, 1000, 0.5 * 16 * 4),
    ],
)
def test_default_timeout_is_serfs_formula(interval: float, members: int, expected: float) -> None:
    assert default_timeout(interval, members) == pytest.approx(expected)


def _filters_match(filter_nodes: list[str], filter_tags: dict[str, str]) -> bool:
    # serf query_test.go TestSerf_ShouldProcess: node "zip" with these tags.
    _, queries = make("zip", {"role": "webserver", "datacenter": "east-aws"})
    data = query(filter_nodes=filter_nodes, filter_tags=filter_tags)
    return any(isinstance(e, QueryReceived) for e in queries.receive_query(data, 0.0))


@pytest.mark.parametrize(
    ("filter_nodes", "filter_tags", "expected"),
    [
        (["foo", "bar", "zip"], {"role": "^web", "datacenter": "aws$"}, True),
        (["foo", "bar"], {}, False),
        ([], {"other": "cool"}, False),
        ([], {"role": "db"}, False),
        # Serf's regexp.MatchString finds the expression anywhere in the value.
        ([], {"role": "server"}, True),
        ([], {}, True),
    ],
)
def test_should_process_follows_serf(
    filter_nodes: list[str], filter_tags: dict[str, str], expected: bool
) -> None:
    assert _filters_match(filter_nodes, filter_tags) is expected


def test_a_query_with_a_bad_expression_from_the_wire_is_dropped() -> None:
    _, queries = make(tags={"role": "web"})
    assert queries.receive_query(query(filter_tags={"role": "("}), 0.0) == []
    assert queries.stats.dropped == {"bad_filter": 1}


@pytest.mark.parametrize(
    ("params", "field", "limit"),
    [
        (QueryParams(""), "name", "1 to 128 bytes"),
        # A name reaches handler processes' environment, where a NUL cannot go.
        (QueryParams("a\x00b"), "name", "without control characters"),
        (QueryParams("a\nb"), "name", "without control characters"),
        (QueryParams("q", filter_tags={"role": "("}), "filter_tags", "RE2"),
        (QueryParams("q", filter_tags={"role": "a" * 257}), "filter_tags", "256"),
        (QueryParams("q", filter_nodes=("bad name",)), "filter_nodes", "node name"),
        (QueryParams("q", filter_nodes=tuple(f"n{i}" for i in range(65))), "filter_nodes", "64"),
        (QueryParams("q", relay_factor=6), "relay_factor", "0 to 5"),
        (QueryParams("q", timeout=301), "timeout", "300"),
        (QueryParams("q", timeout=-1), "timeout", "300"),
        (QueryParams("q", payload=b"x" * 1024), "payload", "1024 bytes"),
    ],
)
def test_bad_parameters_name_the_field_and_the_limit(
    params: QueryParams, field: str, limit: str
) -> None:
    _, queries = make()
    with pytest.raises(InvalidArgument) as caught:
        queries.ask(params, 0.0)
    assert caught.value.violations[0].field == field
    assert limit in str(caught.value)


def test_the_query_buffer_admits_each_query_once_and_forgets_old_times() -> None:
    buffer = QueryBuffer(4)
    assert buffer.admit(5, 1, 6)
    assert not buffer.admit(5, 1, 6)
    assert buffer.admit(5, 2, 6)
    assert buffer.admit(9, 1, 10)  # the slot of time 5 now holds time 9
    assert not buffer.admit(5, 3, 10)  # older than the ring


def test_the_query_buffer_holds_a_bounded_number_of_queries_per_time() -> None:
    # A sender stamping every query with one old time cannot grow a slot without bound.
    buffer = QueryBuffer(4)
    admitted = [buffer.admit(5, query_id, 6) for query_id in range(1000)]
    assert admitted.count(True) == QUERIES_PER_LAMPORT_TIME
    assert not any(admitted[QUERIES_PER_LAMPORT_TIME:])


def test_wire_queries_are_bounded() -> None:
    _, queries = make()
    for data in (
        query(origin="bad name"),
        query(relay_factor=6),
        query(timeout_ms=0),
        query(timeout_ms=301_000),
        query(name=""),
        query(name="a\x00b"),
        query(lamport_time=2**40),
        b"\xff\xff",
    ):
        assert queries.receive_query(data, 0.0) == []
    assert sum(queries.stats.dropped.values()) == 8


def test_the_asker_handles_its_own_query_and_collects_one_ack_and_one_response() -> None:
    _, queries = make("zip")
    query_id, deadline, effects = queries.ask(QueryParams("q", b"hi", request_ack=True), 0.0)
    assert isinstance(effects[0], BroadcastQuery)
    assert effects[1] == QueryAck(query_id, "zip")
    received = effects[2]
    assert isinstance(received, QueryReceived)
    assert received.payload == b"hi"
    assert queries.respond(received.handle, b"pong", 0.1) == [
        QueryResponse(query_id, "zip", b"pong")
    ]
    with pytest.raises(FailedPrecondition):
        queries.respond(received.handle, b"again", 0.2)
    # A copy of the same query (gossip brings it back) is not handled again.
    assert queries.receive_query(effects[0].data, 0.3) == []
    # The asker gossips the query again at a quarter and half of its timeout.
    assert queries.tick(deadline * 0.25) == [effects[0]]
    assert queries.tick(deadline * 0.4) == []
    assert queries.tick(deadline * 0.5) == [effects[0]]
    assert queries.tick(deadline - 0.01) == []
    assert queries.tick(deadline) == [QueryDone(query_id, 1, 1)]
    assert queries.outstanding() == 0


def members(layer: Membership, *names: str) -> None:
    for index, name in enumerate(names, start=1):
        receive(layer, codec.encode_alive(1, name, (f"10.0.2.{index}", 7946), b""))


def test_replies_from_the_wire_are_deduplicated_per_member_and_end_at_the_deadline() -> None:
    layer, queries = make("zip")
    members(layer, "a", "b", "c")
    query_id, deadline, _ = queries.ask(QueryParams("q", timeout=2.0), 0.0)

    def reply(member: str, ack: bool = False, payload: bytes = b"r") -> bytes:
        body = wire.QueryReply(lamport_time=1, id=query_id, origin="zip", ack=ack, payload=payload)
        setattr(body, "from", member)
        return wire.QueryDatagram(reply=body).SerializeToString()

    assert queries.receive_reply(reply("a", ack=True), 0.5) == [QueryAck(query_id, "a")]
    assert queries.receive_reply(reply("a", ack=True), 0.6) == []
    assert queries.receive_reply(reply("a"), 0.7) == [QueryResponse(query_id, "a", b"r")]
    assert queries.receive_reply(reply("a", payload=b"other"), 0.8) == []
    too_big = reply("b", payload=b"x" * (QUERY_RESPONSE_SIZE_LIMIT + 1))
    assert queries.receive_reply(too_big, 0.9) == []
    assert queries.receive_reply(reply("c"), deadline) == []  # late
    assert queries.tick(deadline) == [QueryDone(query_id, 1, 1)]


def test_only_members_answer_a_query() -> None:
    # A stranger who saw a query's id and time cannot fill the caller's stream with
    # answers from made-up names.
    layer, queries = make("zip")
    members(layer, "known")
    query_id, _, _ = queries.ask(QueryParams("q", timeout=2.0), 0.0)
    for member in ("known", "made-up-1", "made-up-2"):
        body = wire.QueryReply(lamport_time=1, id=query_id, origin="zip", payload=b"r")
        setattr(body, "from", member)
        queries.receive_reply(wire.QueryDatagram(reply=body).SerializeToString(), 0.5)
    assert queries.stats.responses == 1
    assert queries.stats.dropped == {"unknown_responder": 2}


def test_a_query_for_a_tag_this_member_lacks_compiles_nothing() -> None:
    # Compiling costs (matching does not): the expression is not even looked at.
    _, queries = make("zip", {"role": "web"})
    assert queries.receive_query(query(filter_tags={"zone": "("}), 0.0) == []
    assert queries.stats.dropped == {}


def test_an_expression_too_costly_to_compile_is_refused_fast() -> None:
    # \pL{300} takes RE2 100-200 ms to compile with its default memory; within the
    # agent's bound it is refused in about a millisecond, from the API and the wire.
    _, queries = make("zip", {"role": "web"})
    started = time.perf_counter()
    with pytest.raises(InvalidArgument) as caught:
        queries.ask(QueryParams("q", filter_tags={"role": "\\pL{300}|"}), 0.0)
    assert "filter_tags: compiles to more than 64 KiB" in str(caught.value)
    assert queries.receive_query(query(filter_tags={"role": "\\pL{300}|"}), 0.0) == []
    assert queries.stats.dropped == {"bad_filter": 1}
    assert time.perf_counter() - started < 0.05


def test_a_response_after_the_timeout_is_refused() -> None:
    _, queries = make("zip")
    _, _, effects = queries.ask(QueryParams("q", timeout=1.0), 0.0)
    received = next(e for e in effects if isinstance(e, QueryReceived))
    with pytest.raises(FailedPrecondition):
        queries.respond(received.handle, b"late", 1.0)
    with pytest.raises(InvalidArgument):
        queries.respond(received.handle, b"x" * (QUERY_RESPONSE_SIZE_LIMIT + 1), 0.5)


def test_open_queries_are_bounded() -> None:
    _, queries = make()
    for _ in range(MAX_OUTSTANDING):
        queries.ask(QueryParams("q"), 0.0)
    with pytest.raises(ResourceExhausted):
        queries.ask(QueryParams("q"), 0.0)


def test_a_relay_forwards_to_the_origin_it_knows_only_once() -> None:
    layer, queries = make("relay")
    receive(layer, alive("origin"))

    def relayed(origin: str) -> bytes:
        body = wire.QueryReply(lamport_time=1, id=3, origin=origin, payload=b"r")
        setattr(body, "from", "m")
        return wire.QueryDatagram(relay=body).SerializeToString()

    forwarded = queries.receive_reply(relayed("origin"), 0.0)
    assert len(forwarded) == 1
    assert isinstance(forwarded[0], SendReply)
    assert forwarded[0].address == ("10.0.1.1", 7946)
    datagram = wire.QueryDatagram.FromString(forwarded[0].data)
    assert datagram.WhichOneof("body") == "reply"
    assert datagram.reply.payload == b"r"
    assert queries.receive_reply(relayed("origin"), 0.1) == []
    # An origin this member does not know: nothing is sent anywhere.
    assert queries.receive_reply(relayed("unknown-origin"), 0.2) == []
    assert queries.stats.dropped == {"unknown_origin": 1}


def test_the_push_pull_state_carries_the_query_clock_within_bounds() -> None:
    _, queries = make()
    assert wire.QueryState.FromString(queries.local_state()).lamport_time == 1
    queries.merge_state(wire.QueryState(lamport_time=900).SerializeToString())
    assert queries.lamport_time == 900  # serf: Witness(QueryLTime - 1)
    queries.merge_state(wire.QueryState(lamport_time=2**40).SerializeToString())
    queries.merge_state(b"\xff\xff")
    assert queries.lamport_time == 900
    assert queries.stats.dropped == {"lamport_out_of_range": 1, "state_decode": 1}
