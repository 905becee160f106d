"""Fan-out of agent events to the streaming RPCs (Watch*).

Every subscriber gets its own bounded backlog. A subscriber that falls more than
`max_backlog` events behind is cut off with RESOURCE_EXHAUSTED instead of making
the agent buffer without limit; clients then resubscribe and start again from a
fresh snapshot, which every Watch stream sends first. Publishing never blocks
and never fails because of a slow reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from controlplane.errors import ResourceExhausted

T = TypeVar("T")

DEFAULT_MAX_BACKLOG = 1024


class Subscription(Generic[T]):
    """One reader's queue; iterate it with `async for`."""

    def __init__(self, hub: EventHub[T], max_backlog: int) -> None:
        self._hub = hub
        self._items: deque[T] = deque()
        self._max_backlog = max_backlog
        self._ready = asyncio.Event()
        self._overflowed = False
        self._closed = False

    def _offer(self, item: T) -> None:
        if self._overflowed:
            return
        if len(self._items) >= self._max_backlog:
            self._overflowed = True
            self._items.clear()
        else:
            self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._hub._subscribers.discard(self)
        self._ready.set()

    async def get(self) -> T:
        while not self._items:
            if self._overflowed:
                raise ResourceExhausted(
                    f"the stream fell more than {self._max_backlog} events behind; "
                    "resubscribe to start again from a fresh snapshot"
                )
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventHub(Generic[T]):
    """Publishes each item to every current subscriber."""

    def __init__(self, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._subscribers: set[Subscription[T]] = set()
        self._max_backlog = max_backlog

    def subscribe(self) -> Subscription[T]:
        subscription = Subscription(self, self._max_backlog)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, item: T) -> None:
        for subscription in list(self._subscribers):
            subscription._offer(item)

    def close(self) -> None:
        """Ends every subscription (streams finish cleanly), e.g. at shutdown."""
        for subscription in list(self._subscribers):
            subscription.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
