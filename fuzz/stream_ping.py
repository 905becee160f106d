"""Fuzzes both sides of the TCP fallback ping (``Gossip/Ping``): the member answering a
peer's framed ping (``answer_stream_ping``), and the prober reading the answer to its
own stream ping (``stream_ping_response``) while its probe waits for it.

The first byte picks the framing (plaintext, labelled, or labelled and encrypted) and
the side. ``StreamPingRefused`` is the answering side's documented refusal; the
prober never raises, so anything else raised, or an exception the core swallowed as
``internal_error``, is a crash.

    python -m fuzz.stream_ping --seconds 60
"""

from __future__ import annotations

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.gossip import StartStreamPing, codec
    from controlplane.gossip.errors import StreamPingRefused
    from controlplane.membership import Membership
    from fuzz import _cores
    from fuzz.runner import main

NAME = "stream_ping"
EXPECTED: tuple[type[BaseException], ...] = (StreamPingRefused,)
_FRAMINGS = ((False, ""), (False, _cores.LABEL), (True, _cores.LABEL))
_TARGET = "fuzz-b"


def _waiting_prober(keyed: bool, label: str) -> tuple[Membership, int, float]:
    """A member whose probe of ``_TARGET`` went unanswered over UDP and now waits for its
    stream ping: (member, the ping's sequence number, the time)."""
    layer = _cores.membership(keyed=keyed, label=label)
    alive = codec.encode_alive(1, _TARGET, _cores.PEER, b"")
    layer.receive_packet(_cores.PEER, _cores.packet([alive], keyed=keyed, label=label), _cores.NOW)
    now = _cores.NOW
    for _ in range(50):
        now = layer.next_deadline()
        for effect in layer.tick(now):
            if isinstance(effect, StartStreamPing):
                return layer, effect.seq_no, now
    raise AssertionError("the member never pinged over the stream")


def target(data: bytes) -> None:
    if not data:
        return
    keyed, label = _FRAMINGS[data[0] % len(_FRAMINGS)]
    if data[0] & 0x80:
        layer, seq_no, now = _waiting_prober(keyed, label)
        before = layer.node.stats.dropped["internal_error"]
        try:
            layer.stream_ping_response(seq_no, data[1:], now + 0.01)
            layer.tick(now + 5.0)
        finally:
            _cores.check_internal_errors(layer, before)
        return
    layer = _cores.membership(keyed=keyed, label=label)
    before = layer.node.stats.dropped["internal_error"]
    try:
        layer.answer_stream_ping(data[1:])
    finally:
        _cores.check_internal_errors(layer, before)


def seeds() -> list[bytes]:
    out = []
    for index, (keyed, label) in enumerate(_FRAMINGS):
        for messages in (
            [codec.encode_ping(7, "fuzz-a", _TARGET)],
            [codec.encode_ping(7, "", _TARGET)],
            [codec.encode_ack(7)],
            [codec.encode_ack(1), codec.encode_ack(2)],
        ):
            frame = _cores.packet(messages, keyed=keyed, label=label)
            out.append(bytes((index,)) + frame)
            out.append(bytes((0x80 | index,)) + frame)
    return out


if __name__ == "__main__":
    main(NAME, target, EXPECTED, seeds())
