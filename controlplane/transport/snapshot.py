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
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from controlplane.membership import SnapshotRecord, SnapshotState, parse_snapshot

log = logging.getLogger("controlplane.snapshot")


def snapshot_path(data_dir: str) -> Path:
    # Serf keeps its snapshot at <data_dir>/serf/local.snapshot.
    return Path(data_dir) / "serf" / "local.snapshot"


def read_snapshot(path: Path) -> SnapshotState | None:
    """The parsed snapshot, or None when there is none; problems are logged, not raised."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.error("cannot read snapshot %s (%s); starting without it", path, error.strerror)
        return None
    state, problems = parse_snapshot(data)
    for problem in problems:
        log.warning("snapshot %s: %s", path, problem)
    if problems:
        log.warning(
            "snapshot %s is damaged; kept what could be read (%d members)",
            path,
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
            log.error("cannot write snapshot %s: %s", self.path, error)

    def _append(self, lines: list[bytes]) -> None:
        if lines and self._handle is not None:
            self._handle.write(b"".join(lines))
            self._handle.flush()

    def _rewrite(self, data: bytes) -> None:
        temporary = self.path.with_suffix(".compact")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        try:
            os.replace(temporary, self.path)
        finally:
            # Appends go on to whichever file is now in place.
            self._handle = open(self.path, "ab")  # noqa: SIM115 - held open

    def close(self) -> None:
        """Writes what is pending, waits for the writer, then closes the file."""
        self._flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._handle is None:
            return
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
            self._handle = None
