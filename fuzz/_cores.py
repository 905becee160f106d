"""Deterministic gossip cores for the harnesses: a fixed clock, seeded randomness, fixed keys.

Imported by harnesses inside ``atheris.instrument_imports()``, so what it pulls in
from the project is instrumented too.
"""

from __future__ import annotations

import random

from controlplane.gossip import codec
from controlplane.gossip.config import GossipConfig
from controlplane.gossip.keyring import Keyring
from controlplane.membership import Membership, MembershipConfig

NOW = 1000.0
PEER = ("10.0.0.2", 7946)
KEY = bytes(range(16))
LABEL = "fuzz"


class SwallowedCrash(Exception):
    """The core caught an exception itself and counted it as ``internal_error``:
    still a bug in a decoder, which the core only keeps from taking the member down."""


def keyring() -> Keyring:
    # A seeded nonce source keeps encrypted seeds (and so the corpus) reproducible.
    return Keyring([KEY], nonce_source=random.Random(7).randbytes)


def membership(*, keyed: bool = False, label: str = "", name: str = "fuzz-a") -> Membership:
    """A started member with a couple of peers known, so merges meet existing state."""
    return Membership(
        GossipConfig(),
        MembershipConfig(),
        name,
        ("10.0.0.1", 7946),
        tags={"role": "fuzz"},
        rng=random.Random(1),
        now=NOW,
        keyring=keyring() if keyed else None,
        label=label,
    )


def check_internal_errors(layer: Membership, before: int) -> None:
    """Raise when the core swallowed an exception while handling the last input."""
    if layer.node.stats.dropped["internal_error"] != before:
        raise SwallowedCrash("the core counted an internal_error")


def packet(messages: list[bytes], *, keyed: bool = False, label: str = "") -> bytes:
    """A framed packet, as a peer would send it."""
    header = codec.frame_header(label, keyed)
    return codec.seal(header, codec.packet_body(messages), keyring() if keyed else None)


def cluster_states() -> list[bytes]:
    """Push-pull frames (plaintext, unlabelled) of a small simulated cluster with user
    events and a leave: seeds that carry every part of a real state."""
    from controlplane.testing.membership_sim import MembershipSimCluster

    cluster = MembershipSimCluster(seed=3)
    cluster.start("node-0", tags={"zone": "0"})
    for name in ("node-1", "node-2"):
        cluster.start(name, tags={"zone": name[-1]}, seeds=["node-0"])
    cluster.run_for(5.0)
    cluster.fire("node-1", "deploy", b"v1")
    cluster.run_for(2.0)
    cluster.leave("node-2")
    cluster.run_for(5.0)
    return [cluster.layers[name].push_pull_reply() for name in ("node-0", "node-1")]
