"""The election message codec: round trips, bounds, and garbage."""

from __future__ import annotations

import contextlib
import random

import pytest

from controlplane.election import (
    MAX_MESSAGE_BYTES,
    LeaseMessage,
    MessageError,
    ReleaseMessage,
    VoteMessage,
    decode,
)

SAMPLES: list[LeaseMessage | VoteMessage | ReleaseMessage] = [
    LeaseMessage("node-a", 7, 42, True, True, 10.0),
    LeaseMessage("ü" * 127, 2**64 - 1, 0, False, True, 10.0),
    LeaseMessage("n", 1, 3, True, False, 3.25),
    VoteMessage("voter", "cand", 3, 9, True, 3, 0.0),
    VoteMessage("v" * 255, "c" * 255, 1, 2, False, 8, 4.5),
    ReleaseMessage("old-leader", 12),
]


@pytest.mark.parametrize("message", SAMPLES)
def test_round_trip(message: LeaseMessage | VoteMessage | ReleaseMessage) -> None:
    data = message.to_bytes()
    assert len(data) <= MAX_MESSAGE_BYTES
    assert decode(data) == message


def test_message_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02\x01" + bytes(40),  # unknown version
        b"\x01\x09" + bytes(40),  # unknown kind
        SAMPLES[0].to_bytes()[:-1],  # truncated name
        SAMPLES[0].to_bytes() + b"x",  # trailing byte
        SAMPLES[3].to_bytes()[:10],  # truncated fields
        b"\x01\x03" + bytes(8) + b"\x00",  # empty name
        b"\x01\x03" + bytes(8) + b"\x02\xff\xfe",  # not UTF-8
        b"\x01\x01\x04" + bytes(24) + b"\x01a",  # unknown flag
        b"\x01\x01\x00" + bytes(24) + b"\x01a",  # neither established nor request
        bytes(MAX_MESSAGE_BYTES + 1),
    ],
)
def test_garbage_raises_message_error(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode(data)


def test_bad_durations_rejected_both_ways() -> None:
    with pytest.raises(MessageError):
        LeaseMessage("a", 1, 1, True, True, float("nan")).to_bytes()
    with pytest.raises(MessageError):
        VoteMessage("a", "b", 1, 1, False, 1, -1.0).to_bytes()
    raw = bytearray(LeaseMessage("a", 1, 1, True, True, 10.0).to_bytes())
    raw[19:27] = b"\x7f\xf0\x00\x00\x00\x00\x00\x00"  # +inf
    with pytest.raises(MessageError):
        decode(bytes(raw))


def test_bad_fields_rejected_on_encode() -> None:
    with pytest.raises(MessageError):
        LeaseMessage("", 1, 1, True, True, 1.0).to_bytes()
    with pytest.raises(MessageError):
        LeaseMessage("a" * 256, 1, 1, True, True, 1.0).to_bytes()
    with pytest.raises(MessageError):
        ReleaseMessage("a", -1).to_bytes()


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
