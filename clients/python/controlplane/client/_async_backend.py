"""The few concurrency primitives the asyncio client needs, on asyncio.

`aio.py` is written against this module; `tools/unasync.py` turns it into the
blocking `sync.py`, which imports `_sync_backend` instead: the same names with the
same meaning on threads. Both modules are written by hand, and kept this small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

from controlplane.v1 import membership_pb2

T = TypeVar("T")
M_co = TypeVar("M_co", covariant=True)

QueryHandler = Callable[[membership_pb2.WatchQueriesResponse], Awaitable[bytes | None]]
"""Answers one query (`AsyncClient.answer_queries`): the response, or None for none."""

CANCELLED: tuple[type[BaseException], ...] = (asyncio.CancelledError,)
"""What a cancelled wait raises (nothing on threads)."""


class Stream(Protocol[M_co]):
    """A server-streaming call: iterated for messages, cancellable."""

    def __aiter__(self) -> AsyncIterator[M_co]: ...

    def cancel(self) -> bool: ...


class Event:
    """A flag that can be waited for, with a timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if `timeout` seconds passed first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


class Mutex:
    """Guards state shared between concurrent callers. On one event loop nothing runs
    between two awaits, and no await happens while it is held: nothing to do."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class Background:
    """Work running beside the caller: a task on the running loop."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(work(), name=name)

    def cancel(self) -> None:
        """Asks the work to stop now, without waiting for it."""
        self._task.cancel()

    async def stop(self) -> None:
        """Stops the work and waits until it has."""
        if self._task is asyncio.current_task():
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def run_blocking(function: Callable[..., T], *args: Any) -> T:
    """Runs a blocking function (DNS) in a worker thread, off the event loop."""
    return await asyncio.to_thread(function, *args)


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
