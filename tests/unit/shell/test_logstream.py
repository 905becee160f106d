"""controlplane/shell/logstream.py: readers get the lines their level admits, a slow
reader loses the oldest lines and is told how many, and the agent's own log keeps
its level while a reader asks for more."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from controlplane.errors import ResourceExhausted
from controlplane.shell import logstream
from controlplane.shell.logstream import LogStream

log = logging.getLogger("controlplane.test.logstream")


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    saved = (logger.level, list(logger.handlers))
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.INFO)
    logger.handlers = [stderr]
    logger.setLevel(logging.INFO)
    yield logger
    logger.setLevel(saved[0])
    logger.handlers = saved[1]


async def take(reader: logstream.LogReader, count: int) -> list[logstream.LogLine]:
    lines = []
    async for line in reader:
        lines.append(line)
        if len(lines) == count:
            break
    return lines


async def test_each_reader_gets_the_lines_its_level_admits(root: logging.Logger) -> None:
    stream = LogStream(asyncio.get_running_loop(), logging.INFO)
    stream.install()
    try:
        debug_reader = stream.open(logging.DEBUG)
        warning_reader = stream.open(logging.WARNING)
        # A debug reader lowers the root logger, not the other handlers.
        assert root.level == logging.DEBUG
        assert root.handlers[0].level == logging.INFO
        log.debug("d %d", 1)
        log.info("i")
        log.warning("w")
        assert [line.message for line in await take(debug_reader, 3)] == ["d 1", "i", "w"]
        (warning,) = await take(warning_reader, 1)
        assert (warning.level, warning.logger, warning.message) == (
            "warning",
            "controlplane.test.logstream",
            "w",
        )
        debug_reader.close()
        assert root.level == logging.INFO  # the warning reader needs no more
        warning_reader.close()
        assert root.level == logging.INFO  # back to the configured level
    finally:
        stream.uninstall()
    assert stream not in root.handlers


async def test_a_slow_reader_loses_the_oldest_lines_and_is_told(
    root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logstream, "BACKLOG", 3)
    stream = LogStream(asyncio.get_running_loop(), logging.INFO)
    stream.install()
    try:
        reader = stream.open(logging.INFO)
        for index in range(5):
            log.info("line %d", index)
        lines = await take(reader, 3)
        assert [line.message for line in lines] == ["line 2", "line 3", "line 4"]
        assert [line.dropped for line in lines] == [2, 0, 0]
    finally:
        stream.uninstall()


async def test_lines_from_other_threads_arrive_through_the_loop(root: logging.Logger) -> None:
    stream = LogStream(asyncio.get_running_loop(), logging.INFO)
    stream.install()
    try:
        reader = stream.open(logging.INFO)
        thread = threading.Thread(target=log.info, args=("from a thread",))
        thread.start()
        thread.join()
        (line,) = await asyncio.wait_for(take(reader, 1), 5)
        assert line.message == "from a thread"
    finally:
        stream.uninstall()


async def test_a_reload_moves_the_configured_level(root: logging.Logger) -> None:
    stream = LogStream(asyncio.get_running_loop(), logging.INFO)
    stream.install()
    try:
        reader = stream.open(logging.WARNING)
        stream.set_configured_level(logging.ERROR)
        assert root.level == logging.WARNING
        assert root.handlers[0].level == logging.ERROR
        reader.close()
        assert root.level == logging.ERROR
    finally:
        stream.uninstall()


async def test_readers_are_bounded(root: logging.Logger) -> None:
    stream = LogStream(asyncio.get_running_loop(), logging.INFO)
    readers = [stream.open(logging.INFO) for _ in range(logstream.MAX_READERS)]
    with pytest.raises(ResourceExhausted, match="at most 16 log monitors"):
        stream.open(logging.DEBUG)
    readers[0].close()
    stream.open(logging.INFO).close()  # room again
