"""Fuzzes ``rings.state``: the ring registrations a peer sends and the agent keeps on disk.

Three paths over the same bytes: ``RegistrationStore.load`` reading them as the file
(``ConfigError`` is its documented refusal of a damaged file), ``decode_state`` at
once and ``StateDecoder`` a slice at a time (documented to return None or drop bad
registrations, never to raise; both must agree), and the decoded registrations merged
into a ``RingDirectory`` (``InvalidArgument`` when no ring can place them).

    python -m fuzz.ring_state --seconds 60
"""

from __future__ import annotations

import tempfile

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.api.ring import RegistrationStore
    from controlplane.configerror import ConfigError
    from controlplane.errors import InvalidArgument
    from controlplane.rings import directory as rings
    from fuzz import _cores
    from fuzz.runner import main

NAME = "ring_state"
_STORE = RegistrationStore(tempfile.mkdtemp(prefix="fuzz-rings-"))


def target(data: bytes) -> None:
    whole = rings.decode_state(data)
    decoder = rings.StateDecoder(data)
    while not decoder.done:
        decoder.decode_some(3)
    # Sliced decoding must agree with decoding at once.
    if whole is not None and decoder.registrations != whole:
        raise AssertionError("StateDecoder slices disagree with decode_state")
    _STORE.path.write_bytes(data)
    try:
        stored = _STORE.load()
    except ConfigError:
        stored = None
    if (stored is None) != (whole is None):
        raise AssertionError("RegistrationStore.load disagrees with decode_state")
    if whole:
        directory = rings.RingDirectory("fuzz-a", max_registrations=64)
        try:
            directory.merge_registrations(whole, _cores.NOW)
        except InvalidArgument:
            return
        for name in directory.names():
            directory.view(name)
        directory.expire(_cores.NOW + 1e6)


def seeds() -> list[bytes]:
    live = rings.Registration(
        ring="web",
        id=rings.node_id("10.0.0.5", 80),
        address="10.0.0.5",
        port=80,
        weight=10,
        metadata={"zone": "a"},
        lamport_time=4,
        origin="fuzz-a",
    )
    gone = rings.Registration(
        ring="web",
        id=rings.node_id("10.0.0.6", 80),
        address="10.0.0.6",
        port=80,
        weight=1,
        metadata={},
        lamport_time=5,
        origin="fuzz-b",
        removed=True,
    )
    return [rings.encode_state([]), rings.encode_state([live, gone])]


if __name__ == "__main__":
    main(NAME, target, (), seeds())
