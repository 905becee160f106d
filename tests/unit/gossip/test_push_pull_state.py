"""Push-pull states at fleet size: assembled from cached records, merged in slices, bounded."""

from __future__ import annotations

import pytest

from controlplane.gossip import GossipConfig, PushPullRejected, codec
from controlplane.gossip.node import MERGE_CHANGE_COST
from controlplane.wire.v1 import gossip_pb2 as pb

from .helpers import PEER, make_node, packet


def state_frame(records: list[tuple[str, str, int]]) -> bytes:
    state = pb.PushPullState(protocol_version=codec.PROTOCOL_VERSION)
    for name, host, incarnation in records:
        state.members.add(
            name=name,
            address=pb.Address(host=host, port=7946),
            incarnation=incarnation,
            status=pb.MEMBER_STATUS_ALIVE,
        )
    return codec.seal(codec.frame_header("", False), state.SerializeToString(), None)


def reply_records(node) -> dict[str, tuple[tuple[str, int], bytes, int, int]]:
    body = codec.open_frame(node.push_pull_reply(), b"", None)
    state = pb.PushPullState.FromString(body)
    assert state.protocol_version == codec.PROTOCOL_VERSION
    return {
        r.name: ((r.address.host, r.address.port), r.meta, r.incarnation, r.status)
        for r in state.members
    }


def expected_records(node) -> dict[str, tuple[tuple[str, int], bytes, int, int]]:
    return {m.name: (m.address, m.meta, m.incarnation, int(m.status)) for m in node.members()}


def test_the_reply_follows_every_change_of_a_cached_record():
    node = make_node()
    node.handle_push_pull(PEER, state_frame([("b", "10.0.0.5", 1), ("c", "10.0.0.6", 1)]), 0.0)
    assert reply_records(node) == expected_records(node)
    # A refutation-like bump, new metadata, a new address after a leave, a death: each
    # must show (every field of the cache key, one change at a time).
    node.receive_packet(PEER, packet(codec.encode_alive(3, "b", ("10.0.0.5", 7946), b"")), 1.0)
    assert reply_records(node) == expected_records(node)
    node.receive_packet(PEER, packet(codec.encode_alive(4, "b", ("10.0.0.5", 7946), b"x")), 1.0)
    assert reply_records(node) == expected_records(node)
    node.receive_packet(PEER, packet(codec.encode_dead(1, "c", "c")), 2.0)
    node.receive_packet(PEER, packet(codec.encode_alive(1, "c", ("10.0.0.7", 7946), b"")), 3.0)
    node.update_meta(b"mine", 4.0)
    assert reply_records(node) == expected_records(node)
    assert reply_records(node)["c"][0] == ("10.0.0.7", 7946)
    # A refutation changes only our own incarnation.
    mine = reply_records(node)["me"][2]
    node.receive_packet(PEER, packet(codec.encode_suspect(mine, "me", "b")), 5.0)
    assert reply_records(node) == expected_records(node)
    assert reply_records(node)["me"][2] > mine


def test_a_state_merged_in_slices_equals_one_merged_at_once():
    records = [(f"m{i:03d}", f"10.1.0.{i + 1}", 1 + i % 3) for i in range(200)]
    frame = state_frame(records)
    at_once = make_node()
    expected = at_once.push_pull_response(PEER, frame, 0.0)
    sliced = make_node()
    job = sliced.open_push_pull_response(frame)
    assert job is not None
    got = []
    steps = 0
    while not job.done:
        got.extend(sliced.merge_some(job, 0.0, 7))
        steps += 1
    assert got == expected
    assert expected_records(sliced) == expected_records(at_once)
    # Every record was news, and news costs more than the slice's budget: one a slice.
    assert steps == 200


def test_a_slice_counts_news_dearer_than_records_that_change_nothing():
    records = [(f"m{i:03d}", f"10.1.0.{i + 1}", 1) for i in range(100)]
    node = make_node()
    node.push_pull_response(PEER, state_frame(records), 0.0)

    def slices(frame: bytes, limit: int) -> int:
        job = node.open_push_pull_response(frame)
        assert job is not None
        count = 0
        while not job.done:
            node.merge_some(job, 1.0, limit)
            count += 1
        return count

    # All known: one unit each.
    assert slices(state_frame(records), 10) == 10
    # Every tenth record news (a member not known yet), MERGE_CHANGE_COST units each:
    # each of the ten ends a slice, and the last nine known records make one more.
    mixed = [
        (f"new{i:03d}", f"10.2.0.{i + 1}", 1) if i % 10 == 0 else record
        for i, record in enumerate(records)
    ]
    assert slices(state_frame(mixed), MERGE_CHANGE_COST) == 11
    # Merged again, nothing is news: ceil(100 / 16) slices.
    assert slices(state_frame(mixed), MERGE_CHANGE_COST) == 7


def test_a_state_with_more_members_than_the_limit_is_refused():
    node = make_node(config=GossipConfig.lan(max_nodes=10))
    with pytest.raises(PushPullRejected, match="too_many_members"):
        node.open_push_pull(state_frame([(f"m{i}", "10.1.0.1", 1) for i in range(11)]))
    assert node.stats.dropped["push_pull_too_many_members"] == 1
    node.open_push_pull(state_frame([(f"m{i}", "10.1.0.1", 1) for i in range(10)]))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("127.000.0.1", None),
        ("1.2.3", None),
        ("localhost", None),
        ("fe80::1%eth0", None),
        ("10.0.0.1\x00", None),
        ("", None),
    ],
)
def test_addresses_from_the_wire_are_ip_literals_in_canonical_form(host, expected):
    address = pb.Address(host=host, port=7946)
    assert codec.decode_address(address) == (None if expected is None else (expected, 7946))


@pytest.mark.parametrize("port", [0, 65536, 70000])
def test_addresses_need_a_port(port):
    assert codec.decode_address(pb.Address(host="10.0.0.1", port=port)) is None
