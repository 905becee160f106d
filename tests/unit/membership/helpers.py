"""Helpers for driving one Membership by hand: build datagrams the way a peer would."""

from __future__ import annotations

import random

from controlplane.gossip import GossipConfig, codec
from controlplane.membership import Effect, Membership, MembershipConfig, SnapshotState

PEER = ("10.0.0.99", 7946)


def make(
    name: str = "a",
    config: MembershipConfig | None = None,
    now: float = 0.0,
    snapshot: SnapshotState | None = None,
) -> Membership:
    return Membership(
        GossipConfig.lan(),
        config or MembershipConfig(),
        name,
        ("10.0.0.1", 7946),
        rng=random.Random(1),
        now=now,
        snapshot=snapshot,
    )


def datagram(*messages: bytes) -> bytes:
    """A plaintext, unlabelled gossip packet carrying ``messages``."""
    return codec.seal(codec.frame_header("", False), codec.packet_body(list(messages)), None)


def alive(name: str, incarnation: int = 1, meta: bytes = b"") -> bytes:
    return codec.encode_alive(incarnation, name, ("10.0.1.1", 7946), meta)


def dead(name: str, incarnation: int, from_node: str) -> bytes:
    return codec.encode_dead(incarnation, name, from_node)


def user(payload: bytes) -> bytes:
    return codec.encode_user(payload)


def receive(layer: Membership, *messages: bytes, now: float = 1.0) -> list[Effect]:
    return layer.receive_packet(PEER, datagram(*messages), now)
