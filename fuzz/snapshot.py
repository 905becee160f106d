"""Fuzz the membership snapshot reader, which replays a file a crash may have cut short.

``parse_snapshot`` documents that it never raises: every exception is a crash.

    python -m fuzz.snapshot --seconds 60
"""

from __future__ import annotations

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.membership.snapshot import parse_snapshot
    from fuzz.runner import main


def target(data: bytes) -> None:
    parse_snapshot(data)


SEEDS = [
    b"alive: fuzz-a 10.0.0.1 7946\nclock: 12\nevent-clock: 3\n",
    b"alive: fuzz-b [::1] 7946\nnot-alive: fuzz-b\nleave\n",
    b"# comment\nclock: 18446744073709551615\nalive: x 10.0.0.2 1",
]

if __name__ == "__main__":
    main("snapshot", target, (), SEEDS)
