"""Query handler processes: no shell, payload on stdin, Serf's environment, the
response limit, the timeout and the concurrency bound; on asyncio's loop and on
uvloop alike."""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import uvloop

from controlplane.membership.queries import QUERY_RESPONSE_SIZE_LIMIT, QueryReceived
from controlplane.shell.queries import QueryHandlers


def python(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def query(name: str = "who", payload: bytes = b"ping") -> QueryReceived:
    return QueryReceived(1, name, payload, "origin", 42, deadline=1e9)


LOOPS = {"asyncio": None, "uvloop": uvloop.new_event_loop}
_loop_factory = None


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def on_each_loop(request: pytest.FixtureRequest) -> None:
    global _loop_factory
    _loop_factory = LOOPS[request.param]


def run_on_loop(coroutine: Any) -> Any:
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(coroutine)


def run(handlers: QueryHandlers, received: QueryReceived) -> bytes | None:
    result: bytes | None = run_on_loop(handlers.run(received))
    return result


def test_the_response_is_stdout_with_serfs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLPLANE_ENCRYPT", "secret")
    code = (
        "import os, sys; e = os.environ; sys.stdout.write('|'.join(["
        "e['CONTROLPLANE_EVENT'], e['CONTROLPLANE_QUERY_NAME'], e['CONTROLPLANE_QUERY_LTIME'],"
        " e['CONTROLPLANE_SELF_NAME'], e['SERF_EVENT'], e['SERF_QUERY_NAME'],"
        " e['SERF_QUERY_LTIME'], e['SERF_SELF_NAME'], e.get('CONTROLPLANE_ENCRYPT', '-'),"
        " sys.stdin.read()]))"
    )
    handlers = QueryHandlers({"who": python(code)}, 10.0, "node-1")
    assert run(handlers, query()) == b"query|who|42|node-1|query|who|42|node-1|-|ping"


def test_no_shell_interprets_the_command() -> None:
    # A shell would expand $HOME and run the `;` part; shlex only splits the words.
    handlers = QueryHandlers(
        {"who": python("import sys; sys.stdout.write(sys.argv[1])") + " '$HOME; echo x'"},
        10.0,
        "n",
    )
    assert run(handlers, query()) == b"$HOME; echo x"


def test_the_star_handler_answers_names_without_their_own() -> None:
    handlers = QueryHandlers(
        {"*": python("print('any', end='')"), "who": python("print('who', end='')")}, 10.0, "n"
    )
    assert run(handlers, query("who")) == b"who"
    assert run(handlers, query("other")) == b"any"
    assert QueryHandlers({"who": "true"}, 1.0, "n").argv_for("other") is None


def test_the_response_is_truncated_to_the_limit() -> None:
    handlers = QueryHandlers({"who": python("print('x' * 100000, end='')")}, 10.0, "n")
    assert run(handlers, query()) == b"x" * QUERY_RESPONSE_SIZE_LIMIT


def test_a_failing_or_silent_handler_sends_no_response() -> None:
    failing = QueryHandlers({"who": python("import sys; print('no'); sys.exit(3)")}, 10.0, "n")
    assert run(failing, query()) is None
    assert failing.stats.failed == 1
    silent = QueryHandlers({"who": python("pass")}, 10.0, "n")
    assert run(silent, query()) is None
    missing = QueryHandlers({"who": "/nonexistent/handler"}, 10.0, "n")
    assert run(missing, query()) is None
    assert missing.stats.failed == 1


# A handler that never ends on its own: it waits for a signal that never comes.
NEVER_ENDS = "import signal; signal.pause()"


def gate(tmp_path: Path) -> Path:
    """A FIFO: opening one end blocks until the other end is opened, so a handler and
    the test can wait for each other without sleeping or polling."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    return fifo


def test_a_handler_is_killed_after_the_timeout() -> None:
    handlers = QueryHandlers({"who": python(f"print('late', flush=True); {NEVER_ENDS}")}, 0.5, "n")
    assert run(handlers, query()) is None
    assert handlers.stats.timed_out == 1


def _ended_within(pid: int, seconds: float) -> bool:
    """True once process ``pid`` has ended (a zombie counts: it waits for its parent),
    waiting for the kernel to say so rather than polling."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], seconds)
        return bool(readable)
    finally:
        os.close(descriptor)


def test_the_timeout_kills_the_handlers_children_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-c', {NEVER_ENDS!r}]); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); {NEVER_ENDS}"
    )
    handlers = QueryHandlers({"who": python(code)}, 1.0, "n")
    started = time.monotonic()
    assert run(handlers, query()) is None
    # Its child holds the handler's pipes: alive, it would keep the run waiting on them.
    assert time.monotonic() - started < 15
    pid = int(pid_file.read_text())
    assert _ended_within(pid, 5.0), "the handler's child outlived the timeout"


def test_at_most_limit_handlers_run_at_once(tmp_path: Path) -> None:
    fifo = gate(tmp_path)
    # The handler answers once the test opens the gate: it is running while the
    # second query arrives, whatever the machine's speed.
    code = f"open({str(fifo)!r}).read(); print('done', end='')"
    handlers = QueryHandlers({"who": python(code)}, 10.0, "n", limit=1)

    def open_gate() -> None:
        with open(fifo, "w") as writer:  # blocks until the handler opens its end
            writer.write("go")

    async def both() -> list[bytes | None]:
        first = asyncio.ensure_future(handlers.run(query()))
        second = asyncio.ensure_future(handlers.run(query()))
        refused = await second
        await asyncio.get_running_loop().run_in_executor(None, open_gate)
        return [await first, refused]

    assert sorted(run_on_loop(both()), key=repr) == [None, b"done"]
    assert handlers.stats.skipped_busy == 1


def test_a_payload_larger_than_a_pipe_reaches_the_handler_whole() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: sixteen times a pipe's buffer
    code = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest(), end='')"
    handlers = QueryHandlers({"who": python(code)}, 10.0, "n")
    answer = run(handlers, query(payload=payload))
    assert answer == hashlib.sha256(payload).hexdigest().encode()


def test_a_handler_that_never_reads_its_input_still_answers() -> None:
    handlers = QueryHandlers({"who": python("print('ignored', end='')")}, 10.0, "n")
    assert run(handlers, query(payload=b"x" * (1 << 20))) == b"ignored"
    assert handlers.stats.failed == 0


def test_closing_ends_a_running_handler_at_once(tmp_path: Path) -> None:
    fifo = gate(tmp_path)
    code = f"open({str(fifo)!r}, 'w').write('started'); {NEVER_ENDS}"
    handlers = QueryHandlers({"who": python(code)}, 60.0, "n")

    def wait_for_start() -> str:
        with open(fifo) as reader:  # blocks until the handler opens its end
            return reader.read()

    async def close_while_running() -> bytes | None:
        running = asyncio.ensure_future(handlers.run(query()))
        assert await asyncio.get_running_loop().run_in_executor(None, wait_for_start) == "started"
        handlers.close()
        return await running

    started = time.monotonic()
    assert run_on_loop(close_while_running()) is None
    assert time.monotonic() - started < 10  # the handler never ends; the timeout is 60 s
    # Neither a failure nor a timeout of the handler's: the agent is stopping.
    assert (handlers.stats.failed, handlers.stats.timed_out) == (0, 0)
