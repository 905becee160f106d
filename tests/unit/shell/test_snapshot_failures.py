"""The snapshot writer on a disk that fails: it logs (rate-limited), keeps going,
never joins half a record to the next, and closes cleanly."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from controlplane.membership import SnapshotRecord, parse_snapshot
from controlplane.shell import snapshot
from controlplane.shell.snapshot import SnapshotFile


class FullDisk:
    """A file handle whose writes fail as on a full disk, after `written` got through."""

    def __init__(self, path: Path, written: bytes = b"") -> None:
        self.path = path
        self.written = written
        self.closed = False

    def write(self, data: bytes) -> int:
        with open(self.path, "ab") as real:
            real.write(self.written)  # a partial record reaches the file, then no room
        self.written = b""
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "closed")

    def close(self) -> None:
        self.closed = True
        raise OSError(errno.ENOSPC, "No space left on device")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_failed_writes_are_logged_once_per_interval_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "local.snapshot"
    file = SnapshotFile(path)
    file.write(SnapshotRecord("alive: a 10.0.0.1 7946\n"))
    file._handle = FullDisk(path, written=b"alive: b 10.0")  # type: ignore[assignment]

    with caplog.at_level(logging.WARNING, logger="controlplane.snapshot"):
        file.write(SnapshotRecord("alive: b 10.0.0.2 7946\n"))
        file._handle = FullDisk(path)  # type: ignore[assignment]
        file.write(SnapshotRecord("alive: c 10.0.0.3 7946\n"))
        assert len(errors(caplog)) == 1  # the second failure, within the interval, is counted
        assert "No space left on device (1 writes failed" in errors(caplog)[0]

        file.write(SnapshotRecord("alive: d 10.0.0.4 7946\n"))  # room again
        assert "written again after 2 failed writes" in caplog.text
    file.close()

    state, problems = parse_snapshot(path.read_bytes())
    # The half record left by the failed write stays alone on its line: skipped,
    # never joined to the next record.
    assert dict(state.members) == {"a": ("10.0.0.1", 7946), "d": ("10.0.0.4", 7946)}
    assert len(problems) == 1
    assert "alive: b 10.0" in problems[0]


def test_failures_are_logged_again_after_the_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "FAILURE_LOG_INTERVAL", 0.0)
    path = tmp_path / "local.snapshot"
    file = SnapshotFile(path)
    with caplog.at_level(logging.ERROR, logger="controlplane.snapshot"):
        for count in (1, 2):
            file._handle = FullDisk(path)  # type: ignore[assignment]
            file.write(SnapshotRecord(f"clock: {count}\n"))
    assert [m.split("(")[1] for m in errors(caplog)] == [
        "1 writes failed; a restart may not rejoin every member or may replay old events)",
        "2 writes failed; a restart may not rejoin every member or may replay old events)",
    ]
    file._handle = None
    file.close()


def test_close_on_a_full_disk_logs_and_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "local.snapshot"
    file = SnapshotFile(path)
    full = FullDisk(path)
    file._handle = full  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="controlplane.snapshot"):
        file.close()  # does not raise: shutdown goes on
    assert full.closed
    assert "cannot write snapshot" in caplog.text


def test_a_failed_compaction_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "local.snapshot"
    file = SnapshotFile(path)
    file.write(SnapshotRecord("alive: a 10.0.0.1 7946\n"))

    def no_room(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_room)
    with caplog.at_level(logging.ERROR, logger="controlplane.snapshot"):
        file.write(SnapshotRecord("alive: b 10.0.0.2 7946\n", rewrite=True))
    monkeypatch.undo()
    assert "No space left on device" in caplog.text
    assert not path.with_suffix(".compact").exists()
    file.write(SnapshotRecord("alive: c 10.0.0.3 7946\n"))
    file.close()
    state, _ = parse_snapshot(path.read_bytes())
    assert [name for name, _ in state.members] == ["a", "c"]
