"""The snapshot file on disk: read once at start, appended while running.

The membership layer decides what to record (Serf's line format) and when to
compact; this shell only performs the I/O. Appends are flushed as they happen so
a crash loses at most the line being written; a compaction writes a temporary
file, fsyncs it and renames it over the old one, so the file is always either the
old or the new version, never half of each.

On an event loop the I/O runs on one writer thread, in order: records of one
loop iteration go out as one batch, so neither a burst of thousands of member
changes nor a compaction's fsync holds the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from controlplane.configerror import ConfigError
from controlplane.membership import SnapshotRecord, SnapshotState, parse_snapshot

log = logging.getLogger("controlplane.snapshot")

# A snapshot that cannot be written (full or read-only disk) is logged when the
# failures start, then at most this often, with a count: the agent keeps running.
FAILURE_LOG_INTERVAL = 60.0


def snapshot_path(data_dir: str) -> Path:
    # Serf keeps its snapshot at <data_dir>/serf/local.snapshot.
    return Path(data_dir) / "serf" / "local.snapshot"


# Problems of a damaged snapshot logged one by one; the rest are counted. A file of
# garbage must not flood the log with one line per line.
PROBLEMS_LOGGED = 10


def read_snapshot(path: Path, *, rejoin_after_leave: bool = False) -> SnapshotState | None:
    """The parsed snapshot, or None when there is none (``rejoin_after_leave``: see
    ``parse_snapshot``).

    A damaged snapshot is replayed as far as it can be read, as Serf's replay
    does: bad records are logged (the first PROBLEMS_LOGGED of them) and skipped;
    at worst the agent starts as a new member and rejoins through --join. A file
    that exists but cannot be read raises ConfigError (Serf does not start
    when it cannot open its snapshot), since it could not be appended to either."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(
            f"snapshot {str(path)!r} cannot be read: {error.strerror or error}"
        ) from None
    state, problems = parse_snapshot(data, rejoin_after_leave=rejoin_after_leave)
    for problem in problems[:PROBLEMS_LOGGED]:
        log.warning("snapshot %s: %s", path, problem)
    if problems:
        log.warning(
            "snapshot %s is damaged (%d bad records%s); kept what could be read (%d members)",
            path,
            len(problems),
            f", {len(problems) - PROBLEMS_LOGGED} not shown"
            if len(problems) > PROBLEMS_LOGGED
            else "",
            len(state.members),
        )
    return state


class SnapshotFile:
    """Appends and rewrites the snapshot file as the layer asks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: BinaryIO | None = open(path, "ab")  # noqa: SIM115 - held open
        self._pending: list[SnapshotRecord] = []
        self._writer: ThreadPoolExecutor | None = None
        self._failures = 0
        self._failure_logged_at: float | None = None

    def write(self, record: SnapshotRecord) -> None:
        """Writes `record`: at once without a running loop, else in this iteration's batch."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_batch([record])
            return
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(record)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self._writer.submit(self._write_batch, batch)

    def _write_batch(self, batch: list[SnapshotRecord]) -> None:
        try:
            appends: list[bytes] = []
            for record in batch:
                if record.rewrite:
                    self._append(appends)
                    appends = []
                    self._rewrite(record.data)
                else:
                    appends.append(record.data)
            self._append(appends)
        except (OSError, ValueError) as error:
            self._failed(error)
        else:
            self._succeeded()

    def _failed(self, error: Exception) -> None:
        """A write failed (a full or read-only disk): the records are lost, the agent
        goes on. Logged when it starts and then at most every FAILURE_LOG_INTERVAL."""
        # Whatever the failed write left in the handle's buffer is dropped with it: the
        # next append reopens the file rather than retrying half a record.
        if self._handle is not None:
            with contextlib.suppress(OSError, ValueError):
                self._handle.close()
            self._handle = None
        self._failures += 1
        now = time.monotonic()
        if self._failure_logged_at is None or now - self._failure_logged_at >= (
            FAILURE_LOG_INTERVAL
        ):
            self._failure_logged_at = now
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            log.error(
                "cannot write snapshot %s: %s (%d writes failed; a restart may not rejoin"
                " every member or may replay old events)",
                self.path,
                reason,
                self._failures,
            )

    def _succeeded(self) -> None:
        if self._failures:
            log.warning(
                "snapshot %s written again after %d failed writes", self.path, self._failures
            )
            self._failures, self._failure_logged_at = 0, None

    def _append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        prefix = b""
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - held open
            # After a failed write the file may end in half a record: a newline ends
            # it, so that it cannot join the next record into another (blank lines
            # are skipped on replay).
            prefix = b"\n" if self._failures else b""
        self._handle.write(prefix + b"".join(lines))
        self._handle.flush()

    def _rewrite(self, data: bytes) -> None:
        temporary = self.path.with_suffix(".compact")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            # On a full disk the half-written copy holds the space that is missing.
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        if self._handle is not None:
            with contextlib.suppress(OSError, ValueError):
                self._handle.close()
            self._handle = None
        os.replace(temporary, self.path)
        # Appends go on to the new file (opened by the next append).

    def close(self) -> None:
        """Writes what is pending, waits for the writer, then closes the file. A write
        that fails now is logged like any other: shutdown goes on."""
        self._flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        except (OSError, ValueError) as error:
            self._failed(error)
        finally:
            with contextlib.suppress(OSError, ValueError):
                handle.close()
