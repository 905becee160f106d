"""The few concurrency primitives the blocking client needs, on threads.

The counterpart of `_async_backend` (see there): the same names with the same
meaning, for `sync.py`, which `tools/unasync.py` generates from `aio.py`. Most are
the standard library's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from threading import Event
from threading import Lock as Mutex
from time import sleep
from typing import Any, Protocol, TypeVar

from controlplane.v1 import membership_pb2

__all__ = [
    "CANCELLED",
    "Background",
    "Event",
    "Mutex",
    "QueryHandler",
    "Stream",
    "run_blocking",
    "sleep",
]

T = TypeVar("T")
M_co = TypeVar("M_co", covariant=True)

QueryHandler = Callable[[membership_pb2.WatchQueriesResponse], bytes | None]
"""Answers one query (`Client.answer_queries`): the response, or None for none."""

# Threads are not cancelled: no exception stands for it.
CANCELLED: tuple[type[BaseException], ...] = ()


class Stream(Iterator[M_co], Protocol[M_co]):
    """A server-streaming call: an iterator of messages that any thread can cancel."""

    def cancel(self) -> bool: ...


class Background:
    """Work running beside the caller: a daemon thread."""

    def __init__(self, work: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=work, name=name, daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Threads cannot be interrupted: the work ends at its next check."""

    def stop(self) -> None:
        """Waits (at most 10 s) for the work to notice it should end."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def run_blocking(function: Callable[..., T], *args: Any) -> T:
    """Runs a blocking function (DNS): on a thread of its own already, inline."""
    return function(*args)
