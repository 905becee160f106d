"""Fuzzes the push-pull merge: a peer's framed ``PushPullState`` opened and merged
into a fresh member the way ``GossipRuntime.serve_push_pull`` drives it
(``Membership.open_push_pull``, then ``merge_some`` in small slices, then the reply),
followed by the timers that run after a merge (suspicion, reaping, coalescing).

The first byte picks the member's framing: plaintext, labelled, or labelled and
encrypted. Seeds are the states of a small simulated cluster. ``PushPullRejected``
is the documented refusal; anything else raised, or an exception the core swallowed
as ``internal_error``, is a crash.

    python -m fuzz.push_pull --seconds 60
"""

from __future__ import annotations

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.gossip import codec
    from controlplane.gossip.errors import PushPullRejected
    from fuzz import _cores
    from fuzz.runner import main

NAME = "push_pull"
EXPECTED: tuple[type[BaseException], ...] = (PushPullRejected,)
_FRAMINGS = ((False, ""), (False, _cores.LABEL), (True, _cores.LABEL))
# Small slices, so the resumable merge (records, then the layer's state) is cut at
# many points, as the runtime cuts it between loop iterations.
SLICE = 3


def target(data: bytes) -> None:
    if not data:
        return
    keyed, label = _FRAMINGS[data[0] % len(_FRAMINGS)]
    # A fresh member per input: the outcome depends on the input alone.
    layer = _cores.membership(keyed=keyed, label=label)
    before = layer.node.stats.dropped["internal_error"]
    try:
        job = layer.open_push_pull(data[1:])
        while not job.done:
            layer.merge_some(job, _cores.NOW, SLICE)
        layer.push_pull_reply()
        list(layer.members())
        for later in (1.0, 10.0, 60.0):
            layer.tick(_cores.NOW + later)
    finally:
        _cores.check_internal_errors(layer, before)


def seeds() -> list[bytes]:
    out = []
    for frame in _cores.cluster_states():
        body = frame[3:]  # the simulated cluster frames with neither label nor key
        for index, (keyed, label) in enumerate(_FRAMINGS):
            header = codec.frame_header(label, keyed)
            sealed = codec.seal(header, body, _cores.keyring() if keyed else None)
            out.append(bytes((index,)) + sealed)
    return out


if __name__ == "__main__":
    main(NAME, target, EXPECTED, seeds())
