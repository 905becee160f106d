"""The election message codec (election.proto): round trips, bounds, and garbage."""

from __future__ import annotations

import contextlib
import random

import pytest

from controlplane.election import (
    MAX_MESSAGE_BYTES,
    Echo,
    InquiryMessage,
    LeaseMessage,
    Message,
    MessageError,
    ReleaseMessage,
    ViewMessage,
    VoteMessage,
    decode,
)
from controlplane.wire.v1 import election_pb2 as pb

SAMPLES: list[Message] = [
    LeaseMessage("node-a", 7, 42, True, True, 9.5, Echo(1234.5, 0.25)),
    LeaseMessage("u" * 128, 2**64 - 1, 0, False, True, 0.0),
    LeaseMessage("n", 1, 3, True, False, 3.25),
    LeaseMessage("n", 1, 3, True, True, 3.25, None, 12.5),
    VoteMessage("voter", "cand", 3, 9, True, 3, 0.0, 2**64 - 1, 55.125),
    VoteMessage("v" * 128, "c" * 128, 1, 2, False, 8, 4.5, 7, -3.0, True),
    ReleaseMessage("old-leader", 12),
    InquiryMessage("asker", 99, 1e9),
    ViewMessage("r" * 128, "h" * 128, 2**64 - 1, 3600.0, 3600.0, Echo(-1.5, 3600.0), 2**64 - 1),
    ViewMessage("r", None, 0, 0.0, 0.0, Echo(0.0, 0.0), 5),
]


@pytest.mark.parametrize("message", SAMPLES)
def test_round_trip(message: Message) -> None:
    data = message.to_bytes()
    assert len(data) <= MAX_MESSAGE_BYTES
    assert decode(data) == message


def test_renewals_are_small() -> None:
    # One renewal per voter per beat: its size is the election's idle cost.
    renewal = LeaseMessage("server-01", 12, 3456, True, True, 9.0, Echo(12345.678, 0.5), 10.0)
    vote = VoteMessage("server-02", "server-01", 12, 3456, True, 12, 0.0, 2**63, 12345.9)
    assert len(renewal.to_bytes()) < 64
    assert len(vote.to_bytes()) < 80


def test_message_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


def _raw(**body: object) -> bytes:
    return pb.ElectionMessage(**body).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",  # no body
        b"\xff\xff\xff",  # not protobuf
        SAMPLES[0].to_bytes()[:-3],  # truncated
        _raw(lease=pb.Lease(holder="", epoch=1)),  # empty name
        _raw(lease=pb.Lease(holder="a" * 129, epoch=1)),  # name too long
        # Names no member may have (controlplane.gossip.names): each would reach the log.
        _raw(lease=pb.Lease(holder="evil\nleave", epoch=1)),
        _raw(lease=pb.Lease(holder="a b", epoch=1)),
        _raw(lease=pb.Lease(holder="ü", epoch=1)),
        _raw(vote=pb.Vote(voter="v\x00", candidate="c", epoch=1)),
        _raw(inquiry=pb.Inquiry(asker="a\r")),
        _raw(view=pb.View(responder="r", holder="h\n", echo=pb.Echo())),
        _raw(lease=pb.Lease(holder="a", lease_remaining=float("nan"))),
        _raw(lease=pb.Lease(holder="a", lease_remaining=-1.0)),
        _raw(lease=pb.Lease(holder="a", lease_remaining=3600.5)),
        _raw(lease=pb.Lease(holder="a", lease_time=float("nan"))),
        _raw(lease=pb.Lease(holder="a", lease_time=-10.0)),
        _raw(lease=pb.Lease(holder="a", lease_time=1e9)),
        _raw(lease=pb.Lease(holder="a", echo=pb.Echo(stamp=float("inf")))),
        _raw(lease=pb.Lease(holder="a", echo=pb.Echo(stamp=1.0, held=-0.5))),
        _raw(vote=pb.Vote(voter="v", candidate="", epoch=1)),
        _raw(vote=pb.Vote(voter="v", candidate="c", retry_after=float("inf"))),
        _raw(vote=pb.Vote(voter="v", candidate="c", stamp=float("nan"))),
        _raw(inquiry=pb.Inquiry(asker="")),
        _raw(view=pb.View(responder="r")),  # a view must echo the inquiry
        _raw(view=pb.View(responder="r", block_remaining=-1.0, echo=pb.Echo())),
        _raw(release=pb.Release(holder="")),
        bytes(MAX_MESSAGE_BYTES + 1),
    ],
)
def test_garbage_raises_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode(data)


def test_not_utf8_name_is_refused() -> None:
    # Field 1 (lease), holder field 1 with an invalid UTF-8 byte.
    data = bytes([0x0A, 0x03, 0x0A, 0x01, 0xFF])
    with pytest.raises(MessageError):
        decode(data)


def test_bad_fields_rejected_on_encode() -> None:
    with pytest.raises(MessageError):
        LeaseMessage("", 1, 1, True, True, 1.0).to_bytes()
    with pytest.raises(MessageError):
        LeaseMessage("a" * 256, 1, 1, True, True, 1.0).to_bytes()
    with pytest.raises(MessageError):
        LeaseMessage("a", 1, 1, True, True, float("nan")).to_bytes()
    with pytest.raises(MessageError):
        VoteMessage("a", "b", 1, 1, False, 1, -1.0).to_bytes()
    with pytest.raises(MessageError):
        ReleaseMessage("a", -1).to_bytes()
    with pytest.raises(MessageError):
        InquiryMessage("a", 2**64, 0.0).to_bytes()
    with pytest.raises(MessageError):
        LeaseMessage("a", 1, 1, True, True, 1.0, Echo(float("nan"), 0.0)).to_bytes()


def test_random_garbage_never_escapes_as_another_error() -> None:
    rng = random.Random(7)
    valid = [m.to_bytes() for m in SAMPLES]
    for _ in range(5000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        else:
            buf = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        with contextlib.suppress(MessageError):
            decode(data)
