"""Generates the blocking client from the asyncio one, or checks it for drift.

The client is written once, for asyncio (`clients/python/controlplane/client/aio.py`),
as httpcore writes its connection pool: the blocking `Client` (`sync.py`) is the
same code with `async`/`await` removed and the asyncio names swapped for their
blocking counterparts. The concurrency primitives that really differ (a task or a
thread, an `asyncio.Event` or a `threading.Event`) live in two small hand-written
modules, `_async_backend.py` and `_sync_backend.py`, with the same names.

    tools/unasync.py generate   rewrites the generated files
    tools/unasync.py check      exits 1, naming the file, when one differs

The generated files are not committed (.gitignore): the tree holds one client,
written once. They are made when the client distribution is built or installed
(`clients/python/hatch_build.py` calls `generate`, so `pip install clients/python`
and `make venv` produce them) and by `make unasync`; `make lint` runs `check`,
which fails when a generated file was edited by hand or is stale. mypy checks
them like any other module.

The rules need no formatter (a build has none): they produce ruff-clean output as
long as the source is written so that removing `async`/`await` leaves its lines
as ruff would lay them out. In practice: no `(await f()).attr` (bind the answer,
then use it), and a magic trailing comma on a call or signature that would fit on
one line once `async `/`await ` is gone. `check` runs ruff (format and lint) on
each generated file when ruff is installed, so a source that breaks this fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python" / "controlplane" / "client"

HEADER = (
    "# Generated from {source} by tools/unasync.py: do not edit. Change {source}\n"
    "# and run `make unasync` (or `python tools/unasync.py generate`).\n"
)

# Whole-word name substitutions, in order.
NAMES: tuple[tuple[str, str], ...] = (
    ("AsyncClient", "Client"),
    ("AsyncWatch", "Watch"),
    ("AsyncLiveRing", "LiveRing"),
    ("AsyncIterator", "Iterator"),
    ("AsyncIterable", "Iterable"),
    ("StopAsyncIteration", "StopIteration"),
    ("__aenter__", "__enter__"),
    ("__aexit__", "__exit__"),
    ("__aiter__", "__iter__"),
    ("__anext__", "__next__"),
    ("_async_backend", "_sync_backend"),
    ("async_channel", "sync_channel"),
    ("check_health_async", "check_health"),
    ("MembershipAsyncStub", "MembershipStub"),
    ("ServerPoolAsyncStub", "ServerPoolStub"),
    ("RingAsyncStub", "RingStub"),
    ("KeyringAsyncStub", "KeyringStub"),
)

# Plain-text substitutions (prose in docstrings, module paths), in order.
TEXT: tuple[tuple[str, str], ...] = (
    ("grpc.aio.AioRpcError", "grpc.RpcError"),
    ("grpc.aio.", "grpc."),
    ("import grpc.aio\n", ""),
    ("on an asyncio channel", "on a blocking channel"),
    ("The asyncio client:", "The blocking client:"),
    ("An asyncio controlplane client", "A blocking controlplane client"),
    ("with `async for`", "with `for`"),
    ("owns one `grpc.aio` channel", "owns one gRPC channel"),
    ("background maintenance task", "background maintenance thread"),
    (" Create it\ninside a running event loop.", ""),
    ("    async with Client(", "    with Client("),
)


@dataclass(frozen=True)
class Rule:
    """One generated file: its asyncio source and its docstring, which says what the
    blocking module is (the source's says how it is made)."""

    source: str
    target: str
    docstring: str


RULES: tuple[Rule, ...] = (
    Rule(
        source="aio.py",
        target="sync.py",
        docstring=(
            '"""The blocking client: `Client`, its resumable watches and `LiveRing`.\n\n'
            "`Client` owns one gRPC channel per agent address, the failover loop around\n"
            "every unary call, the background maintenance thread (heartbeat at the\n"
            "interval the server asks for, periodic rebalance, re-discovery) and the watch\n"
            "iterators that resume on another agent after a failure. See docs/client.md.\n"
            '"""'
        ),
    ),
    Rule(
        source="_health_async.py",
        target="_health_sync.py",
        docstring=(
            '"""Health/Check on a blocking channel. Import it from\n'
            '`controlplane.client.health`."""'
        ),
    ),
)

_DOCSTRING = re.compile(r'\A(""".*?""")', re.S)
_FROM_IMPORT = re.compile(r"^(from [\w.]+ import )([\w, ]+)$", re.M)


def _member_order(name: str) -> tuple[int, str, str]:
    """isort's (and ruff's) order of imported names: CONSTANTS, Classes, functions."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name.lower(), name


def _sort_imported_names(text: str) -> str:
    """`from m import Iterator, Callable` -> `from m import Callable, Iterator`: a
    renamed name (AsyncIterator -> Iterator) may change its place."""
    return _FROM_IMPORT.sub(
        lambda m: m[1] + ", ".join(sorted(m[2].split(", "), key=_member_order)), text
    )


_AWAIT_IN_PARENS = re.compile(r"(?<![\w)\]])\(\s*await\s")


def _strip_parenthesised_awaits(text: str) -> str:
    """`(await f(x)).y` -> `f(x).y`: without `await` the parentheses only add noise
    (and ruff keeps them). Strings inside are not expected in these spans."""
    while True:
        match = _AWAIT_IN_PARENS.search(text)
        if match is None:
            return text
        depth = 0
        for index in range(match.start(), len(text)):
            char = text[index]
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    break
        else:
            raise SystemExit("unasync: unbalanced parentheses after `(await`")
        inner = text[match.end() : index].rstrip()
        text = text[: match.start()] + inner + text[index + 1 :]


def unasync(source: str, docstring: str) -> str:
    """The blocking module for an asyncio source (before formatting)."""
    text = _DOCSTRING.sub(lambda _: docstring, source, count=1)
    text = _strip_parenthesised_awaits(text)
    for old, new in TEXT:
        text = text.replace(old, new)
    for old, new in NAMES:
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    text = re.sub(r"\basync (def|for|with)\b", r"\1", text)
    text = re.sub(r"\bawait ", "", text)
    # Awaitable[T] -> T, and the import it leaves unused.
    text = re.sub(r"\bAwaitable\[([^\[\]]+)\]", r"\1", text)
    text = re.sub(r"\bAwaitable, ", "", text)
    return _sort_imported_names(text)


def render(rule: Rule, client: Path) -> str:
    """The generated text of `rule.target`."""
    source = (client / rule.source).read_text()
    return HEADER.format(source=rule.source) + unasync(source, rule.docstring)


def generate(client: Path | None = None) -> int:
    """Writes every generated file of `client` (default: the repository's) that
    differs from what its source gives."""
    client = client or CLIENT
    for rule in RULES:
        target = client / rule.target
        text = render(rule, client)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"unasync: wrote {target}")
    return 0


def _ruff() -> str | None:
    """The ruff beside this interpreter (the venv's), else on PATH, else None."""
    return shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def ruff_problems(text: str, path: Path) -> str | None:
    """What ruff (format, then lint) finds wrong with `text` as the file `path`, or
    None when it is clean or ruff is not installed."""
    ruff = _ruff()
    if ruff is None:
        return None
    for command in (["format", "--check"], ["check", "--quiet"]):
        result = subprocess.run(
            [ruff, *command, "--stdin-filename", str(path), "-"],
            input=text,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            return f"ruff {command[0]}: {output.splitlines()[0] if output else 'failed'}"
    return None


def check() -> int:
    failures: list[str] = []
    for rule in RULES:
        target = CLIENT / rule.target
        path = target.relative_to(ROOT)
        expected = render(rule, CLIENT)
        if not target.exists() or target.read_text() != expected:
            failures.append(
                f"unasync: {path} differs from what tools/unasync.py generates; "
                "run `make unasync` (it is generated, never edited)"
            )
        elif (problem := ruff_problems(expected, target)) is not None:
            failures.append(
                f"unasync: {path} as generated from {rule.source} is not ruff-clean "
                f"({problem}); write {rule.source} as the module docstring says"
            )
    for failure in failures:
        print(failure, file=sys.stderr)
    if not failures:
        print(f"unasync: {len(RULES)} generated file(s) up to date")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    return generate() if args.command == "generate" else check()


if __name__ == "__main__":
    raise SystemExit(main())
