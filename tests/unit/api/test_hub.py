from __future__ import annotations

import asyncio

import pytest

from controlplane.api.hub import EventHub
from controlplane.errors import ResourceExhausted


async def test_every_subscriber_gets_every_item_in_order() -> None:
    hub: EventHub[int] = EventHub()
    with hub.subscribe() as first, hub.subscribe() as second:
        for item in range(5):
            hub.publish(item)
        assert [await first.get() for _ in range(5)] == [0, 1, 2, 3, 4]
        assert [await second.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert hub.subscriber_count == 0


async def test_a_reader_waits_for_the_next_item() -> None:
    hub: EventHub[str] = EventHub()
    with hub.subscribe() as subscription:
        waiting = asyncio.ensure_future(subscription.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        hub.publish("x")
        assert await waiting == "x"


async def test_a_slow_reader_is_cut_off_after_its_backlog() -> None:
    hub: EventHub[int] = EventHub(max_backlog=3)
    with hub.subscribe() as slow, hub.subscribe() as fast:
        for item in range(3):
            hub.publish(item)
            assert await fast.get() == item
        hub.publish(3)  # the slow reader holds 3 already: it overflows
        assert await fast.get() == 3
        with pytest.raises(ResourceExhausted, match="fell more than 3 events behind"):
            await slow.get()


async def test_closing_the_hub_ends_iteration_cleanly() -> None:
    hub: EventHub[int] = EventHub()
    subscription = hub.subscribe()
    hub.publish(1)
    hub.close()
    assert [item async for item in subscription] == [1]
