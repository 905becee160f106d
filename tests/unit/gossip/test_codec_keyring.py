"""Frame, packet codec and AES-GCM keyring."""

from __future__ import annotations

import pytest

from controlplane.gossip import Keyring, codec
from controlplane.gossip.keyring import DecryptionFailed

from .helpers import PEER, decode, make_node, packet, sends


def counter_nonces():
    state = {"n": 0}

    def source(size: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(size, "big")

    return source


@pytest.mark.parametrize("size", [16, 24, 32])
def test_round_trip_each_key_size(size):
    keyring = Keyring([bytes([size]) * size], nonce_source=counter_nonces())
    sealed = keyring.encrypt(b"hello", b"aad")
    assert len(sealed) == len(b"hello") + 28
    assert keyring.decrypt(sealed, b"aad") == b"hello"
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(sealed, b"other aad")


def test_bad_key_sizes_rejected():
    with pytest.raises(ValueError, match="16, 24 or 32"):
        Keyring([b"short"])
    with pytest.raises(ValueError, match="at least one key"):
        Keyring([])


def test_secondary_key_decrypts_and_rotation():
    old, new = b"o" * 16, b"n" * 32
    sender = Keyring([old], nonce_source=counter_nonces())
    receiver = Keyring([new, old])
    assert receiver.decrypt(sender.encrypt(b"x", b""), b"") == b"x"
    receiver.use_key(old)
    assert receiver.primary_key == old
    receiver.remove_key(new)
    assert receiver.keys == [old]
    with pytest.raises(ValueError, match="primary"):
        receiver.remove_key(old)


def test_default_nonce_source_is_random():
    keyring = Keyring([b"k" * 16])
    assert keyring.encrypt(b"x", b"")[:12] != keyring.encrypt(b"x", b"")[:12]


def test_encrypted_ping_gets_encrypted_ack():
    key = b"k" * 32
    node = make_node(keyring=Keyring([key], nonce_source=counter_nonces()), label="prod")
    peer_ring = Keyring([key], nonce_source=counter_nonces())
    data = packet(codec.encode_ping(7, "me", "peer"), label="prod", keyring=peer_ring)
    effects = node.receive_packet(PEER, data, 0.0)
    (reply,) = sends(effects)
    decoded = decode(reply, label="prod", keyring=peer_ring)
    assert decoded.messages[0].ack.seq_no == 7


def test_plaintext_refused_with_keyring():
    node = make_node(keyring=Keyring([b"k" * 16]))
    assert node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "p")), 0.0) == []
    assert node.stats.dropped["plaintext"] == 1


def test_wrong_label_refused_encrypted():
    key = b"k" * 16
    node = make_node(keyring=Keyring([key]), label="prod")
    forged = packet(codec.encode_ping(1, "me", "p"), label="test", keyring=Keyring([key]))
    assert node.receive_packet(PEER, forged, 0.0) == []
    assert node.stats.dropped["label"] == 1


def test_label_is_authenticated():
    key = b"k" * 16
    node = make_node(keyring=Keyring([key]), label="prod")
    # Encrypt under label "test" then rewrite the clear header to "prod": the tag fails.
    sealed = packet(codec.encode_ping(1, "me", "p"), label="test", keyring=Keyring([key]))
    tampered = codec.frame_header("prod", True) + sealed[len(codec.frame_header("test", True)) :]
    assert node.receive_packet(PEER, tampered, 0.0) == []
    assert node.stats.dropped["decrypt"] == 1


def test_wrong_key_refused():
    node = make_node(keyring=Keyring([b"a" * 16]))
    data = packet(codec.encode_ping(1, "me", "p"), keyring=Keyring([b"b" * 16]))
    assert node.receive_packet(PEER, data, 0.0) == []
    assert node.stats.dropped["decrypt"] == 1


def test_wrong_label_refused_plaintext():
    node = make_node(label="prod")
    assert node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "p"), label="x"), 0.0) == []
    assert node.stats.dropped["label"] == 1
    ok = node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "p"), label="prod"), 0.0)
    assert len(sends(ok)) == 1


def test_encrypted_packet_without_keyring_refused():
    node = make_node()
    data = packet(codec.encode_ping(1, "me", "p"), keyring=Keyring([b"a" * 16]))
    assert node.receive_packet(PEER, data, 0.0) == []
    assert node.stats.dropped["encrypted_without_keyring"] == 1


def test_unknown_versions_dropped():
    node = make_node()
    good = packet(codec.encode_ping(1, "me", "p"))
    assert node.receive_packet(PEER, b"\x02" + good[1:], 0.0) == []
    assert node.stats.dropped["frame_version"] == 1
    body = codec.packet_body([codec.encode_ping(1, "me", "p")])
    future = codec.frame_header("", False) + b"\x08\x02" + body[2:]
    assert node.receive_packet(PEER, future, 0.0) == []
    assert node.stats.dropped["protocol_version"] == 1


def test_truncated_and_oversized_dropped():
    node = make_node()
    good = packet(codec.encode_ping(1, "me", "p"))
    for cut in range(len(good)):
        assert sends(node.receive_packet(PEER, good[:cut], 0.0)) == []
    assert node.receive_packet(PEER, b"\x01" * 70_000, 0.0) == []
    assert node.stats.dropped["oversized"] == 1
    assert sum(node.stats.dropped.values()) >= 3


def test_compound_packet_processed_in_order():
    node = make_node()
    data = packet(
        codec.encode_alive(1, "peer", PEER, b"m"),
        codec.encode_ping(9, "me", "peer"),
    )
    effects = node.receive_packet(PEER, data, 0.0)
    assert [m.name for m in node.members()].count("peer") == 1
    (reply,) = sends(effects)
    assert decode(reply).messages[0].ack.seq_no == 9


def test_outgoing_packets_fit_udp_buffer():
    node = make_node()
    for index in range(300):
        node.receive_packet(
            PEER, packet(codec.encode_alive(1, f"n{index:03d}", ("10.1.0.1", 1000 + index), b"")), 0
        )
    effects = node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "p")), 0.0)
    (reply,) = sends(effects)
    assert len(reply.data) <= 1400
    assert len(decode(reply).messages) > 10
