"""Fuzz the election epoch file parser (``EpochStore.load``), which must fail closed.

The input is written as ``<data_dir>/election.epoch`` in a private temporary
directory. ``ConfigError`` is the documented refusal; anything else is a crash,
and so is a loaded epoch outside 0..MAX_EPOCH.

    python -m fuzz.epoch_file --seconds 60
"""

from __future__ import annotations

import tempfile

import atheris  # type: ignore[import-untyped]

# Only the project is instrumented: coverage of grpc, protobuf and asyncio would not
# guide the fuzzer and instrumenting them costs seconds at every start.
with atheris.instrument_imports(include=["controlplane"]):
    from controlplane.configerror import ConfigError
    from controlplane.shell.election import EpochStore
    from fuzz.runner import main

_STORE = EpochStore(tempfile.mkdtemp(prefix="fuzz-epoch-"))


def target(data: bytes) -> None:
    _STORE.path.write_bytes(data)
    epoch = _STORE.load()
    if epoch < 0:
        raise AssertionError(f"loaded a negative epoch {epoch}")


SEEDS = [b"0\n", b"42\n", b"18446744073709551615\n", b" 7 "]

if __name__ == "__main__":
    main("epoch_file", target, (ConfigError,), SEEDS)
