"""The shared runner of the harnesses: time bound, seed corpus, crash bookkeeping, summary.

A harness module defines ``target(data)`` and the exceptions its decoder documents;
:func:`main` runs it under libFuzzer (``atheris.Setup`` + ``atheris.Fuzz``) for a
bounded time. Any other exception is a crash: its input is written to
``fuzz/crashes/<harness>/`` and its traceback printed once per distinct place, and
fuzzing goes on so one run reports every crash it can reach. At the deadline one
line is printed::

    fuzz <harness>: <executions> executions in <seconds>s, <crashes> crashes (<distinct> distinct)

and the process exits 1 when anything crashed. libFuzzer's own ``exit`` skips
Python's ``atexit``, so the deadline is checked here, on each input.

This module must not import the project: harnesses import it inside
``atheris.instrument_imports()`` so that its coverage guides the fuzzer.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris  # type: ignore[import-untyped]

FUZZ_DIR = Path(__file__).resolve().parent
Target = Callable[[bytes], None]


class Harness:
    """One target under a deadline, counting executions and unexpected exceptions."""

    def __init__(
        self,
        name: str,
        target: Target,
        expected: tuple[type[BaseException], ...],
        seconds: float,
    ) -> None:
        self.name = name
        self._target = target
        self._expected = expected
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._started = time.monotonic()
        self.executions = 0
        self.crashes = 0
        self._places: set[tuple[str, str, int]] = set()
        self.crash_dir = FUZZ_DIR / "crashes" / name

    def __call__(self, data: bytes) -> None:
        if time.monotonic() >= self._deadline:
            self.finish()
        self.executions += 1
        try:
            self._target(data)
        except self._expected:
            pass
        except Exception as error:  # everything else is what the fuzzer hunts
            self._record(data, error)

    def _record(self, data: bytes, error: Exception) -> None:
        self.crashes += 1
        frame = traceback.extract_tb(error.__traceback__)[-1]
        place = (type(error).__name__, frame.filename, frame.lineno or 0)
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        path = self.crash_dir / f"crash-{hashlib.sha1(data).hexdigest()}"
        path.write_bytes(data)
        if place not in self._places:
            self._places.add(place)
            print(f"fuzz {self.name}: crash, input saved to {path}", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)

    def summary(self) -> str:
        elapsed = time.monotonic() - self._started
        return (
            f"fuzz {self.name}: {self.executions} executions in {elapsed:.0f}s, "
            f"{self.crashes} crashes ({len(self._places)} distinct)"
        )

    def finish(self) -> None:
        print(self.summary(), flush=True)
        sys.stderr.flush()
        # libFuzzer's status lines (coverage) sit in C stdio buffers that os._exit
        # would drop: flush every C stream first.
        ctypes.CDLL(None).fflush(None)
        # libFuzzer would otherwise keep going until its own -max_total_time.
        os._exit(1 if self.crashes else 0)


def _seed(corpus: Path, seeds: Iterable[bytes]) -> None:
    """Writes well-formed inputs into the corpus, so mutation starts from messages that
    reach past the first check instead of from random bytes. Each seed is written when
    missing, not only into an empty corpus: a fresh checkout holds the committed
    regression inputs already."""
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = corpus / f"seed-{hashlib.sha1(seed).hexdigest()}"
        if not path.exists():
            path.write_bytes(seed)


def _quiet_libfuzzer(log: Path) -> None:
    """Sends libFuzzer's progress lines (it writes to file descriptor 2) to ``log``;
    Python's ``sys.stderr`` keeps the terminal for crash tracebacks."""
    terminal = os.dup(2)
    with open(log, "wb") as handle:
        os.dup2(handle.fileno(), 2)
    sys.stderr = open(terminal, "w", buffering=1, closefd=True)  # noqa: SIM115


def main(
    name: str,
    target: Target,
    expected: tuple[type[BaseException], ...],
    seeds: Iterable[bytes] = (),
    argv: list[str] | None = None,
) -> None:
    """Fuzz ``target`` for ``--seconds``; extra arguments go to libFuzzer."""
    parser = argparse.ArgumentParser(prog=f"python -m fuzz.{name}")
    parser.add_argument("--seconds", type=float, default=60.0)
    options, libfuzzer_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    corpus = FUZZ_DIR / "corpus" / name
    _seed(corpus, seeds)
    harness = Harness(name, target, expected, options.seconds)
    artifacts = FUZZ_DIR / "crashes" / name
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        # A backstop only: the harness ends the run itself at its deadline.
        f"-max_total_time={int(options.seconds) + 30}",
        "-max_len=4096",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=0",
        *libfuzzer_args,
        str(corpus),
    ]
    _quiet_libfuzzer(artifacts / "libfuzzer.log")
    atheris.Setup(args, harness)
    atheris.Fuzz()
    harness.finish()
