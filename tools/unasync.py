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
them like any other module; ruff, which skips ignored files, does not.
"""

from __future__ import annotations

import argparse
import re
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
    return re.sub(r"\bAwaitable, ", "", text)


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


def check() -> int:
    drifted: list[str] = []
    for rule in RULES:
        target = CLIENT / rule.target
        if not target.exists() or target.read_text() != render(rule, CLIENT):
            drifted.append(str(target.relative_to(ROOT)))
    for path in drifted:
        print(
            f"unasync: {path} differs from what tools/unasync.py generates; "
            "run `make unasync` (it is generated, never edited)",
            file=sys.stderr,
        )
    if not drifted:
        print(f"unasync: {len(RULES)} generated file(s) up to date")
    return 1 if drifted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    return generate() if args.command == "generate" else check()


if __name__ == "__main__":
    raise SystemExit(main())
