"""Fuzz the "direct" election datagrams: the direct frame layer (flags, label, keys) and
the election message decoder behind it.

The first input byte picks plain or encrypted framing. ``DirectFrameError`` and
``MessageError`` are the documented refusals; anything else is a crash.

    python -m fuzz.direct_frame --seconds 60
"""

from __future__ import annotations

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.election import messages
    from controlplane.gossip.direct import DirectFrameError, open_direct, seal_direct
    from fuzz import _cores
    from fuzz.runner import main

_KEYRING = _cores.keyring()


def target(data: bytes) -> None:
    if not data:
        return
    keyring = _KEYRING if data[0] & 1 else None
    _channel, payload = open_direct(data[1:], _cores.LABEL, keyring)
    messages.decode(payload)


def seeds() -> list[bytes]:
    # One valid message of each kind, so mutations start past the decoder's first checks.
    echo = messages.Echo(stamp=12.5, held=0.25)
    valid: list[messages.Message] = [
        messages.LeaseMessage("node-1", 7, 3, True, False, 4.5, echo),
        messages.VoteMessage("node-2", "node-1", 7, 3, True, 7, 0.0, life=9, stamp=1.5),
        messages.ReleaseMessage("node-1", 7),
        messages.InquiryMessage("node-3", 2, 3.25),
        messages.ViewMessage("node-2", "node-1", 7, 4.0, 0.0, echo, max_epoch=7),
        messages.ViewMessage("node-2", None, 0, 0.0, 1.0, echo),
    ]
    payloads = [b"", b"\x0a\x00", b"\x12\x04\x08\x01\x10\x02"]
    payloads += [message.to_bytes() for message in valid]
    out = []
    for keyed in (0, 1):
        for payload in payloads:
            frame = seal_direct(
                "election", payload, _cores.LABEL, _cores.keyring() if keyed else None
            )
            out.append(bytes((keyed,)) + frame)
    return out


if __name__ == "__main__":
    main("direct_frame", target, (DirectFrameError, messages.MessageError), seeds())
