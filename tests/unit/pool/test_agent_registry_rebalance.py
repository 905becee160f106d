"""The agent's pool registry pings by itself and hands the results to the pool."""

from __future__ import annotations

import asyncio

from controlplane.api.server_pool import PoolRegistry
from controlplane.pool import Server

from .helpers import make_server, names


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_registry_pings_in_plan_order_until_one_answers() -> None:
    pinged: list[str] = []

    async def pinger(server: Server) -> bool:
        pinged.append(server.name)
        await asyncio.sleep(0)
        return len(pinged) == 2

    registry = PoolRegistry(Clock(), pinger=pinger)
    entry = registry.get_or_create("p", None)
    entry.pool.refresh_server_lists([make_server(i) for i in range(4)], 4, None, 100.0)
    result = await registry.rebalance(entry)
    assert [s.name for s in result.pinged] == pinged
    assert result.head is not None
    assert result.head.name == pinged[1]
    assert names(entry.pool.primary_servers())[0] == pinged[1]
    assert names(entry.pool.primary_servers())[-1] == pinged[0]
    assert not entry.rebalancing


async def test_a_heartbeat_during_the_pings_is_respected() -> None:
    clock = Clock()

    async def pinger(server: Server) -> bool:
        # The server answers, but a heartbeat drops it while its ping is in flight.
        survivors = [s for s in entry.pool.servers() if s.name != server.name]
        entry.pool.refresh_server_lists(survivors, 3, None, clock())
        return True

    registry = PoolRegistry(clock, pinger=pinger)
    entry = registry.get_or_create("p", None)
    entry.pool.refresh_server_lists([make_server(i) for i in range(4)], 4, None, 100.0)
    result = await registry.rebalance(entry)
    assert result.head is None
    assert not result.offline
    assert len(entry.pool.servers()) == 3
    head = entry.pool.find_server(clock())
    assert head is not None
    assert head.name in names(entry.pool.servers())


class CountingClock(Clock):
    """Counts the maintenance passes: each one reads the clock once."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def test_maintenance_sleeps_until_a_pool_exists(monkeypatch) -> None:
    # An idle agent's CPU is its wake-ups: without pools, nothing wakes for them.
    monkeypatch.setattr("controlplane.api.server_pool.MAINTENANCE_INTERVAL", 0.001)
    clock = CountingClock()
    registry = PoolRegistry(clock, pinger=lambda server: asyncio.sleep(0, True))
    registry.start()
    try:
        await asyncio.sleep(0.05)
        assert clock.reads == 0
        registry.get_or_create("p", None)
        created = clock.reads
        for _ in range(200):
            await asyncio.sleep(0.005)
            if clock.reads > created + 3:
                break
        assert clock.reads > created + 3
    finally:
        await registry.close()
