"""Replays what the fuzzers (fuzz/) found, and their seeds, through each harness target.

A crash a fuzzer found is committed as ``fuzz/corpus/<harness>/regression-<what>``
once its decoder is fixed; this test keeps it fixed. Each harness's own seeds are
replayed too, so a harness that no longer accepts well-formed input (a renamed API,
a changed frame) fails here rather than silently fuzzing nothing.

Only the exceptions a harness documents as refusals may escape its target; anything
else is the crash the fuzzer reported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"


HARNESSES = (
    "gossip_packet",
    "direct_frame",
    "push_pull",
    "stream_ping",
    "snapshot",
    "ring_state",
    "keyring_file",
    "epoch_file",
    "servicers",
)


def _expected(name: str, module: ModuleType) -> tuple[type[BaseException], ...]:
    """The refusals a harness documents (passed to ``fuzz.runner.main``)."""
    declared = getattr(module, "EXPECTED", None)
    if declared is not None:
        return tuple(declared)
    from controlplane.configerror import ConfigError

    if name == "direct_frame":
        from controlplane.election.messages import MessageError
        from controlplane.gossip.direct import DirectFrameError

        return (DirectFrameError, MessageError)
    if name in ("keyring_file", "epoch_file"):
        return (ConfigError,)
    return ()


def _inputs(name: str, module: ModuleType) -> Iterable[tuple[str, bytes]]:
    for path in sorted((FUZZ_DIR / "corpus" / name).glob("regression-*")):
        yield path.name, path.read_bytes()
    seeds: Callable[[], list[bytes]] | list[bytes] = getattr(module, "seeds", None) or getattr(
        module, "SEEDS", []
    )
    for index, seed in enumerate(seeds() if callable(seeds) else seeds):
        yield f"seed-{index}", seed


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_inputs_only_raise_documented_refusals(name: str) -> None:
    module = importlib.import_module(f"fuzz.{name}")
    expected = _expected(name, module)
    replayed = 0
    for label, data in _inputs(name, module):
        try:
            module.target(data)
        except expected:
            pass
        except Exception as error:  # the crash the fuzzer reported
            pytest.fail(f"fuzz.{name} on {label} ({data[:64].hex()}): {error!r}")
        replayed += 1
    assert replayed, f"fuzz.{name} has no seeds: it would start from random bytes"


# Characters str.isdigit() accepts but int() refuses (superscripts), and digits of
# other scripts that int() would read as numbers: no agent ever wrote either.
