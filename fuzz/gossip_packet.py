"""Fuzz the gossip datagram path: frame (version, flags, label, AES-GCM) and packet decode,
then every message handler of a live member.

The first input byte picks the member's framing (plain, labelled, or encrypted and
labelled) so that all three frame layers see mutated bodies. Bad input must be
dropped and counted; an exception, or one the core swallowed as ``internal_error``,
is a crash.

    python -m fuzz.gossip_packet --seconds 60
"""

from __future__ import annotations

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.gossip import codec
    from controlplane.membership import Membership
    from fuzz import _cores
    from fuzz.runner import main

# Built once: a member per framing. Inputs change their state, which is what a hostile
# peer's stream of datagrams does too.
_MEMBERS: tuple[Membership, ...] = ()
_FRAMINGS = ((False, ""), (False, _cores.LABEL), (True, _cores.LABEL))


def _members() -> tuple[Membership, ...]:
    global _MEMBERS
    if not _MEMBERS:
        _MEMBERS = tuple(_cores.membership(keyed=k, label=label) for k, label in _FRAMINGS)
    return _MEMBERS


def target(data: bytes) -> None:
    if not data:
        return
    layer = _members()[data[0] % len(_FRAMINGS)]
    before = layer.node.stats.dropped["internal_error"]
    layer.receive_packet(_cores.PEER, data[1:], _cores.NOW)
    _cores.check_internal_errors(layer, before)


def seeds() -> list[bytes]:
    peer = _cores.PEER
    messages = [
        codec.encode_alive(3, "fuzz-b", peer, b"\x01meta"),
        codec.encode_suspect(3, "fuzz-b", "fuzz-c"),
        codec.encode_dead(4, "fuzz-b", "fuzz-c"),
        codec.encode_ping(1, "fuzz-a", "fuzz-b"),
        codec.encode_ack(1),
        codec.encode_nack(1),
        codec.encode_user(b"user payload"),
    ]
    out = []
    for index, (keyed, label) in enumerate(_FRAMINGS):
        for message in messages:
            out.append(bytes((index,)) + _cores.packet([message], keyed=keyed, label=label))
        out.append(bytes((index,)) + _cores.packet(messages, keyed=keyed, label=label))
    return out


if __name__ == "__main__":
    main("gossip_packet", target, (), seeds())
