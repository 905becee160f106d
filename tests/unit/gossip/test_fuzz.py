"""Seeded fuzzing: random and mutated datagrams and push-pull payloads never escape as
exceptions, and memory (node map, broadcast queue, pending probes) stays bounded."""

from __future__ import annotations

import contextlib
import random

from controlplane.gossip import GossipConfig, Keyring, PushPullRejected, codec

from .helpers import PEER, make_node, packet


def valid_messages(rng: random.Random) -> list[bytes]:
    name = f"n{rng.randrange(1000)}"
    address = (f"10.9.{rng.randrange(256)}.{rng.randrange(256)}", rng.randrange(1, 65536))
    return [
        codec.encode_ping(rng.randrange(2**32), "me", name),
        codec.encode_ack(rng.randrange(2**32)),
        codec.encode_nack(rng.randrange(2**32)),
        codec.encode_alive(rng.randrange(2**32), name, address, rng.randbytes(rng.randrange(40))),
        codec.encode_suspect(rng.randrange(2**32), rng.choice([name, "me"]), "x"),
        codec.encode_dead(rng.randrange(2**32), rng.choice([name, "me"]), "x"),
        codec.encode_indirect_ping(rng.randrange(2**32), name, address, True, "x"),
        codec.encode_user(rng.randbytes(rng.randrange(64))),
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        choice = rng.randrange(4)
        if choice == 0 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif choice == 1 and buffer:
            del buffer[rng.randrange(len(buffer)) :]
        elif choice == 2:
            buffer[rng.randrange(len(buffer) + 1) : 0] = rng.randbytes(rng.randrange(1, 8))
        elif buffer:
            index = rng.randrange(len(buffer))
            buffer[index] ^= 1 << rng.randrange(8)
    return bytes(buffer)


def test_random_and_mutated_packets_never_raise_and_stay_bounded():
    config = GossipConfig.lan(max_nodes=200, max_broadcast_queue_depth=64)
    node = make_node(config=config)
    rng = random.Random(20240601)
    now = 0.0
    for index in range(6000):
        now += 0.01
        kind = index % 3
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 300))
        else:
            messages = rng.sample(valid_messages(rng), rng.randrange(1, 4))
            data = packet(*messages)
            if kind == 2:
                data = mutate(rng, data)
        node.receive_packet(PEER, data, now)
        if index % 50 == 0:
            node.tick(now)
        assert len(node.members()) <= config.max_nodes
        assert node.broadcast_queue_depth <= config.max_broadcast_queue_depth
    assert node.stats.dropped["internal_error"] == 0
    assert sum(node.stats.dropped.values()) > 1000
    # Still working after the abuse.
    reply = node.receive_packet(PEER, packet(codec.encode_ping(1, "me", "x")), now)
    assert len(reply) == 1


def test_mutated_push_pull_never_escapes_unexpected_exceptions():
    rng = random.Random(7)
    source = make_node("src", seed=3)
    for index in range(30):
        source.receive_packet(
            PEER, packet(codec.encode_alive(1, f"m{index}", ("10.3.0.1", 100 + index), b"")), 0
        )
    request = source.join([PEER], 0.0)[0].request
    target = make_node(config=GossipConfig.lan(max_nodes=100))
    for _ in range(1500):
        data = mutate(rng, request) if rng.random() < 0.8 else rng.randbytes(rng.randrange(200))
        with contextlib.suppress(PushPullRejected):
            target.handle_push_pull(PEER, data, 1.0)
        target.push_pull_response(PEER, data, 1.0)
        assert len(target.members()) <= 100
    assert target.stats.dropped["internal_error"] == 0


def test_encrypted_fuzz_is_refused_cleanly():
    node = make_node(keyring=Keyring([b"k" * 16]))
    rng = random.Random(99)
    for _ in range(2000):
        node.receive_packet(PEER, b"\x01\x01\x00" + rng.randbytes(rng.randrange(0, 100)), 0.0)
    assert node.stats.dropped["decrypt"] == 2000
