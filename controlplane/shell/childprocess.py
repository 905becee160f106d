"""One handler process, run to its end in a worker thread: the same on every event loop.

Query handlers are child processes of an agent that runs gRPC's threads. uvloop
starts a child with libuv's `fork()` and runs Python's at-fork hooks in the child
before it calls `exec`; in a process with gRPC's threads the child then crashed
(SIGSEGV) before the handler ran, for about one query in three. Python's
`subprocess` starts the child without running any Python in it (`vfork` where it
can), which is what asyncio's own loop does too. So a handler is started with
`subprocess.Popen` and its pipes are served by a blocking `selectors` loop in a
worker thread, as `Popen.communicate` serves them, except that only the head of
each output is kept (a handler that writes without end costs no memory) and the
deadline covers the whole run. The event loop only awaits the outcome.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Writes of at most PIPE_BUF bytes to a pipe that select() calls writable never block.
_CHUNK = select.PIPE_BUF
_READ = 65536


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How a handler process ended and the heads of what it wrote."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    """None when it was killed: its deadline passed, or the agent is stopping."""
    stopped: bool = False
    """Killed because the agent is stopping (`RunningChildren.kill_all`)."""

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None and not self.stopped


class RunningChildren:
    """The handler processes running now, so that stopping the agent ends them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def add(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._running.add(process)
        if closed:
            kill_group(process)

    def discard(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(process)

    @property
    def closed(self) -> bool:
        return self._closed

    def kill_all(self) -> None:
        """Kills every running handler (and its children); later ones as they start."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for process in running:
            kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the handler's process group (it leads one: `start_new_session`), so
    that a script's children, which would hold its pipes open, end with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def run_child(
    argv: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    timeout: float,
    keep_stdout: int,
    keep_stderr: int,
    children: RunningChildren,
) -> ChildOutcome:
    """Runs `argv` with `stdin` as its input until it exits or `timeout` seconds
    pass; blocking, for a worker thread. Raises OSError when it cannot start."""
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    children.add(process)
    try:
        stdout, stderr, finished = _exchange(process, stdin, deadline, keep_stdout, keep_stderr)
        code: int | None = None
        if finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(max(0.0, deadline - time.monotonic()))
        if code is None:
            kill_group(process)
            process.wait()
        if children.closed:
            return ChildOutcome(stdout, stderr, None, stopped=True)
        return ChildOutcome(stdout, stderr, code)
    except BaseException:
        # Whatever went wrong serving its pipes, the process must not outlive this.
        kill_group(process)
        process.wait()
        raise
    finally:
        children.discard(process)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def _exchange(
    process: subprocess.Popen[bytes],
    payload: bytes,
    deadline: float,
    keep_stdout: int,
    keep_stderr: int,
) -> tuple[bytes, bytes, bool]:
    """Writes `payload` and reads both outputs until they end (True) or the deadline
    passes (False); keeps the first `keep_*` bytes of each."""
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout.fileno(), process.stderr.fileno()
    kept = {out: bytearray(), err: bytearray()}
    limits = {out: keep_stdout, err: keep_stderr}
    written = 0
    with selectors.DefaultSelector() as selector:
        if payload:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        for descriptor in kept:
            selector.register(descriptor, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(kept[out]), bytes(kept[err]), False
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        written += os.write(key.fd, payload[written : written + _CHUNK])
                    except BlockingIOError:  # room for less than a chunk after all
                        continue
                    except BrokenPipeError:  # it stopped reading: fine, it may not need it
                        written = len(payload)
                    if written >= len(payload):
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fd, _READ)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                head = kept[key.fd]
                room = limits[key.fd] - len(head)
                if room > 0:
                    head += chunk[:room]
    return bytes(kept[out]), bytes(kept[err]), True
