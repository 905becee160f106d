"""The agent's log as a stream: what `Membership.Monitor` and `controlplane monitor
--log-level` read, as `serf monitor` does.

`LogStream` is a logging handler on the root logger that hands each record to the
current readers whose level admits it. A reader may ask for a lower level than
the agent logs at (debug while the agent's stderr shows info): while it reads, the
root logger lets those records through and the stderr handler keeps its own level,
so the agent's own log does not change. A reader that falls behind loses lines,
not memory: each keeps at most `BACKLOG` lines and counts the ones it dropped, and
the next line it reads says how many. Records logged from other threads reach the
readers through the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controlplane.errors import ResourceExhausted

BACKLOG = 1000
# Readers at once: each holds up to BACKLOG lines and may turn debug logging on for
# the whole process, so a caller cannot open them without bound.
MAX_READERS = 16


@dataclass(frozen=True, slots=True)
class LogLine:
    created: float
    level: str
    logger: str
    message: str
    # Lines this reader lost just before this one (it fell behind).
    dropped: int = 0


class LogReader:
    """One reader's lines, oldest first; iterate with `async for`."""

    def __init__(self, stream: LogStream, level: int) -> None:
        self.level = level
        self._stream = stream
        self._lines: deque[LogLine] = deque()
        self._ready = asyncio.Event()
        self._dropped = 0
        self._closed = False

    def _offer(self, line: LogLine) -> None:
        if len(self._lines) >= BACKLOG:
            self._lines.popleft()
            self._dropped += 1
        self._lines.append(line)
        self._ready.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stream._remove(self)
            self._ready.set()

    def __aiter__(self) -> AsyncIterator[LogLine]:
        return self

    async def __anext__(self) -> LogLine:
        while not self._lines:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        line = self._lines.popleft()
        if self._dropped:
            line = LogLine(line.created, line.level, line.logger, line.message, self._dropped)
            self._dropped = 0
        return line


class LogStream(logging.Handler):
    """Fans the process's log records out to readers (installed by the agent)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, configured_level: int) -> None:
        super().__init__(logging.NOTSET)
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._readers: set[LogReader] = set()
        self._configured_level = configured_level

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        for reader in list(self._readers):
            reader.close()

    def set_configured_level(self, level: int) -> None:
        """The level the agent logs at (a reload changes it)."""
        self._configured_level = level
        self._apply_root_level()

    def open(self, level: int) -> LogReader:
        """A new reader; ResourceExhausted when MAX_READERS are reading already."""
        if len(self._readers) >= MAX_READERS:
            raise ResourceExhausted(
                f"at most {MAX_READERS} log monitors may read at once; close one first"
            )
        reader = LogReader(self, level)
        self._readers.add(reader)
        self._apply_root_level()
        return reader

    def _remove(self, reader: LogReader) -> None:
        self._readers.discard(reader)
        self._apply_root_level()

    def _apply_root_level(self) -> None:
        # The root logger admits what the lowest reader wants; the other handlers
        # (stderr) keep the configured level, so the agent's own log is unchanged.
        lowest = min([self._configured_level, *(r.level for r in self._readers)])
        root = logging.getLogger()
        root.setLevel(lowest)
        for handler in root.handlers:
            if handler is not self:
                handler.setLevel(self._configured_level)

    def emit(self, record: logging.LogRecord) -> None:
        if not self._readers:
            return
        try:
            line = LogLine(
                record.created, record.levelname.lower(), record.name, record.getMessage()
            )
        except Exception:  # a broken format string must not break the caller
            self.handleError(record)
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(line, record.levelno)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, line, record.levelno)

    def _deliver(self, line: LogLine, levelno: int) -> None:
        for reader in list(self._readers):
            if levelno >= reader.level:
                reader._offer(line)
