"""Builders of raw packets and fresh cores for gossip unit tests."""

from __future__ import annotations

import random

from controlplane.gossip import GossipConfig, GossipNode, Keyring, SendPacket, codec

ME = ("10.0.0.1", 7946)
PEER = ("10.0.0.2", 7946)


def make_node(
    name: str = "me",
    *,
    keyring: Keyring | None = None,
    label: str = "",
    seed: int = 1,
    config: GossipConfig | None = None,
    now: float = 0.0,
) -> GossipNode:
    return GossipNode(
        config or GossipConfig.lan(),
        name,
        ME,
        rng=random.Random(seed),
        now=now,
        keyring=keyring,
        label=label,
    )


def packet(*messages: bytes, label: str = "", keyring: Keyring | None = None) -> bytes:
    header = codec.frame_header(label, keyring is not None)
    return codec.seal(header, codec.packet_body(list(messages)), keyring)


def decode(effect: SendPacket, label: str = "", keyring: Keyring | None = None):
    body = codec.open_frame(effect.data, label.encode(), keyring)
    return codec.decode_packet(body)


def sends(effects) -> list[SendPacket]:
    return [e for e in effects if isinstance(e, SendPacket)]
