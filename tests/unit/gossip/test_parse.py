"""``codec.parse``: every protobuf the cores read from the network, hostile input included.

It must return None for what protobuf refuses (truncated, garbage, deeply nested
input) and let anything else (a bug, a wrong argument) propagate.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from controlplane.gossip import codec
from controlplane.wire.v1 import election_pb2, gossip_pb2, membership_pb2, ring_pb2

# One valid message of each type the cores parse, its last field length-delimited so
# that cutting its last byte truncates it.
SAMPLES: list[ProtoMessage] = [
    gossip_pb2.Packet(
        protocol_version=1, messages=[gossip_pb2.Message(ping=gossip_pb2.Ping(target="b"))]
    ),
    gossip_pb2.PushPullState(protocol_version=1, join=True, user_state=b"serf"),
    membership_pb2.MembershipMessage(
        join_intent=membership_pb2.JoinIntent(lamport_time=3, node="b")
    ),
    membership_pb2.MembershipState(lamport_time=3, left_members=["b"]),
    membership_pb2.MemberTags(tags=[membership_pb2.MemberTag(key="role", value="db")]),
    ring_pb2.RingRegistration(ring="r", id="i", origin="a"),
    ring_pb2.RingState(registrations=[ring_pb2.RingRegistration(ring="r", id="i")]),
    election_pb2.ElectionMessage(release=election_pb2.Release(holder="a", epoch=2)),
    election_pb2.DirectMessage(channel="election", payload=b"x"),
]
TYPES = [type(sample) for sample in SAMPLES]
IDS = [t.DESCRIPTOR.full_name for t in TYPES]

# Start-group tags of unknown field 15 (wire type 3), each closed by its end-group
# tag (wire type 4): nesting protobuf has to track however few fields a type has.
START_GROUP, END_GROUP = bytes([15 << 3 | 3]), bytes([15 << 3 | 4])


def nested(depth: int) -> bytes:
    return START_GROUP * depth + END_GROUP * depth


HOSTILE = {
    "garbage": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    "varint_too_long": b"\x08" + b"\xff" * 11,
    "length_past_end": bytes([15 << 3 | 2, 10]) + b"ab",
    "deeply_nested": nested(10_000),
    "unbalanced_group": START_GROUP * 3,
}


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_a_valid_message_parses(sample: ProtoMessage) -> None:
    assert codec.parse(type(sample), sample.SerializeToString()) == sample


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_a_truncated_message_is_none(sample: ProtoMessage) -> None:
    data = sample.SerializeToString()
    assert codec.parse(type(sample), data[:-1]) is None


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("message_type", TYPES, ids=IDS)
def test_hostile_input_is_none(message_type: type[ProtoMessage], kind: str) -> None:
    assert codec.parse(message_type, HOSTILE[kind]) is None


@pytest.mark.parametrize("message_type", TYPES, ids=IDS)
def test_nesting_within_protobufs_limit_parses(message_type: type[ProtoMessage]) -> None:
    # Unknown groups are kept, not refused, up to protobuf's depth limit (100).
    assert codec.parse(message_type, nested(50)) is not None


def test_what_protobuf_raises_on_hostile_input() -> None:
    """What codec.PARSE_ERRORS is built on: the installed protobuf raises DecodeError
    (not RuntimeError or RecursionError) for deep nesting and for truncated input.
    If an upgrade changes that, parse would let it through: this fails first."""
    for depth in (101, 100_000):
        with pytest.raises(DecodeError):
            gossip_pb2.Packet.FromString(nested(depth))
    truncated = gossip_pb2.Ping(target="b").SerializeToString()[:-1]
    with pytest.raises(DecodeError):
        gossip_pb2.Ping.FromString(truncated)


def test_a_string_that_is_not_utf8_is_none() -> None:
    # Field 2 of Ping is a string: upb raises DecodeError, pure-Python protobuf
    # UnicodeDecodeError; parse refuses it with either.
    assert codec.parse(gossip_pb2.Ping, b"\x12\x02\xc3\x28") is None


def test_parse_lets_anything_but_a_decode_error_through() -> None:
    # Not bytes: a caller's bug, not a peer's input.
    with pytest.raises(TypeError):
        codec.parse(gossip_pb2.Ping, "text")  # type: ignore[arg-type]
