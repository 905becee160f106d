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

# atheris is a development requirement (requirements-dev.txt): without it the harness
# modules fail to import and these tests fail rather than skip.

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
HARNESSES = (
    "gossip_packet",
    "direct_frame",
    "push_pull",
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
    from controlplane.datadir import StateFileError

    if name == "direct_frame":
        from controlplane.election.messages import MessageError
        from controlplane.gossip.direct import DirectFrameError

        return (DirectFrameError, MessageError)
    if name in ("keyring_file", "epoch_file"):
        return (StateFileError,)
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


# The parsers' crashes, also asserted on the parser itself with the outcome it documents.

# Characters str.isdigit() accepts but int() refuses (superscripts), and digits of
# other scripts that int() would read as numbers: no agent ever wrote either.
NON_ASCII_DIGITS = ["\u00b2", "\u2075", "\u0661", "\uff11"]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize(
    "template", ["clock: {}\n", "event-clock: 1{}\n", "alive: node-a 10.0.0.1 79{}\n"]
)
def test_a_snapshot_line_with_non_ascii_digits_is_a_problem_not_a_crash(
    template: str, digit: str
) -> None:
    from controlplane.membership.snapshot import parse_snapshot

    # parse_snapshot documents that it never raises: the line is listed as a problem.
    state, problems = parse_snapshot(("clock: 7\n" + template.format(digit)).encode())
    assert (state.lamport_time, state.event_time, state.members) == (7, 0, ())
    assert len(problems) == 1
    assert problems[0].startswith("line 2: bad ")


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_a_deeply_nested_keyring_file_is_refused_as_a_bad_file(
    tmp_path: Path, opening: bytes
) -> None:
    from controlplane.api.keyring import KeyringFile
    from controlplane.datadir import StateFileError

    # Deeper than json's recursion limit, far under KeyringFile.MAX_BYTES.
    keyring = KeyringFile(str(tmp_path))
    keyring.path.parent.mkdir(parents=True)
    keyring.path.write_bytes(opening * 100_000)
    with pytest.raises(StateFileError, match="not a JSON list of base64 keys"):
        keyring.load()


def test_a_deeply_nested_page_token_is_refused_as_invalid() -> None:
    import base64

    from controlplane.api.paging import page_request
    from controlplane.errors import InvalidArgument

    # Within MAX_PAGE_TOKEN_CHARS, deeper than json's recursion limit: it was INTERNAL.
    token = base64.urlsafe_b64encode(b"[" * 1200).decode().rstrip("=")
    with pytest.raises(InvalidArgument, match="not a page token of this API"):
        page_request(10, token, "digest")
