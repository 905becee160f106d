"""Direct datagrams (gossip/direct.py): the election's point-to-point frames."""

from __future__ import annotations

import pytest

from controlplane.gossip import codec
from controlplane.gossip.direct import (
    FLAG_DIRECT,
    DirectFrameError,
    is_direct,
    open_direct,
    seal_direct,
)
from controlplane.gossip.keyring import Keyring

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_round_trip_in_clear_and_encrypted() -> None:
    frame = seal_direct("election", b"payload", "", None)
    assert is_direct(frame)
    assert open_direct(frame, "", None) == ("election", b"payload")
    keyring = Keyring([KEY])
    sealed = seal_direct("election", b"payload", "prod", keyring)
    assert is_direct(sealed)
    assert b"payload" not in sealed
    assert open_direct(sealed, "prod", keyring) == ("election", b"payload")
    # Any installed key opens it, as for gossip packets.
    assert open_direct(sealed, "prod", Keyring([OTHER, KEY])) == ("election", b"payload")


@pytest.mark.parametrize(
    ("label", "keyring", "opener_label", "opener_keyring"),
    [
        ("a", None, "b", None),  # another cluster label
        ("", None, "", Keyring([KEY])),  # gossip is encrypted here, the frame is not
        ("", Keyring([KEY]), "", None),  # encrypted, but we have no keys
        ("", Keyring([KEY]), "", Keyring([OTHER])),  # a key we do not hold
    ],
)
def test_refused_without_the_right_label_or_key(
    label: str, keyring: Keyring | None, opener_label: str, opener_keyring: Keyring | None
) -> None:
    frame = seal_direct("election", b"x", label, keyring)
    with pytest.raises(DirectFrameError):
        open_direct(frame, opener_label, opener_keyring)


def test_the_direct_flag_is_authenticated() -> None:
    keyring = Keyring([KEY])
    frame = bytearray(seal_direct("election", b"x", "", keyring))
    frame[1] &= ~FLAG_DIRECT
    # Without the flag it is no direct frame, and the gossip core cannot open it either.
    assert not is_direct(bytes(frame))
    with pytest.raises(codec.FrameError):
        codec.open_frame(bytes(frame), b"", keyring)


def test_gossip_packets_are_not_direct_and_direct_frames_are_not_packets() -> None:
    packet = codec.seal(codec.frame_header("", False), codec.packet_body([]), None)
    assert not is_direct(packet)
    frame = seal_direct("election", b"x", "", None)
    with pytest.raises(codec.FrameError):
        codec.open_frame(frame, b"", None)


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x02", b"\x02\x02\x00", b"\x01\x06\x00"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(DirectFrameError):
        open_direct(data, "", None)


def test_undecodable_body_is_refused() -> None:
    with pytest.raises(DirectFrameError):
        open_direct(b"\x01\x02\x00\xff\xff", "", None)
