"""The client's watches against real agents: leader changes, user events, ring changes,
a LiveRing over three agents that maps keys as the agents do, and a watch that an
agent cuts off as too slow (RESOURCE_EXHAUSTED) and that subscribes again."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from controlplane.client import AsyncClient, Client, ClientOptions
from controlplane.client.views import EventUpdate, LeaderUpdate, RingUpdate
from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    start_agent,
    wait_until,
    with_credentials,
)
from controlplane.v1 import membership_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
OPTIONS = ClientOptions(heartbeat=False, timeout=10)
U = TypeVar("U")


class Agents:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.started: list[AgentProcess] = []

    def start(self, index: int, *extra: str) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0", *extra]
        if index > 0:
            args += ["--join", f"{HOSTS[0]}:{self.port}"]
        agent = start_agent(
            f"w-{index}", host=HOSTS[index], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.started.append(agent)
        return agent


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    group = Agents(tmp_path)
    try:
        yield group
    finally:
        for agent in group.started:
            agent.kill()


class Reader:
    """Iterates a blocking watch on a thread, so a test can wait with a bound."""

    def __init__(self, watch: Iterator[U]) -> None:
        self.updates: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(watch,), daemon=True)
        self._thread.start()

    def _run(self, watch: Iterator[object]) -> None:
        try:
            for update in watch:
                self.updates.put(update)
        except Exception as error:  # surfaced to the test by `next`
            self.updates.put(error)

    def poll(self, timeout: float) -> object | None:
        """The next update, or None if none came within `timeout` seconds."""
        try:
            item = self.updates.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def next(self, timeout: float) -> object:
        item = self.poll(timeout)
        assert item is not None, f"no update within {timeout:.1f} s"
        return item


def leader_named(reader: Reader, name: str, within: float) -> membership_pb2.Leader:
    """The first LeaderUpdate naming `name` (others may come first)."""
    deadline = time.monotonic() + within
    while True:
        update = reader.next(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(update, LeaderUpdate)
        if update.leader is not None and update.leader.name == name:
            return update.leader


def test_watch_leader_sees_the_leader_and_its_successor(agents: Agents) -> None:
    first = agents.start(0, "--rank", "2")
    with Client([first.target], with_credentials(OPTIONS)) as client:
        watch = client.watch_leader()
        reader = Reader(watch)
        first_leader = leader_named(reader, "w-0", within=20)
        # A lower rank displaces the incumbent when its lease ends.
        agents.start(1, "--rank", "1")
        successor = leader_named(reader, "w-1", within=30)
        assert successor.epoch > first_leader.epoch
        watch.close()


def test_watch_leader_follows_a_failover_when_the_leader_stops(agents: Agents) -> None:
    leader = agents.start(0, "--rank", "1")
    follower = agents.start(1, "--rank", "2")
    assert wait_until(lambda: len(follower.members()) == 2, timeout=20)
    # Seeded with the leader only, so the watch streams from the agent that stops and
    # has to resume on the follower, which the client learns of by a heartbeat.
    with Client([leader.target], with_credentials(OPTIONS)) as client:
        watch = client.watch_leader()
        reader = Reader(watch)
        first = leader_named(reader, "w-0", within=15)
        assert watch.server == leader.target
        client.heartbeat()
        assert follower.target in {server.address for server in client.servers()}
        stopped_at = time.monotonic()
        # A graceful stop: the leader leaves, its lease runs out, the follower takes over.
        assert leader.terminate() == 0
        successor = leader_named(reader, "w-1", within=18)
        assert successor.epoch > first.epoch
        assert time.monotonic() - stopped_at < 18
        assert (watch.server, watch.resumptions) == (follower.target, 1)
        watch.close()


def test_watch_events_sees_a_fired_user_event_and_only_the_types_asked(agents: Agents) -> None:
    first = agents.start(0)
    with Client([first.target], with_credentials(OPTIONS)) as client:
        watch = client.watch_events(types=[membership_pb2.EVENT_TYPE_USER])
        reader = Reader(watch)
        # The stream is open once the agent has a subscriber; fire until one arrives.
        deadline = time.monotonic() + 15
        update: object = None
        while update is None and time.monotonic() < deadline:
            client.fire_event("deploy", b"v42")
            update = reader.poll(timeout=1.0)
        assert isinstance(update, EventUpdate), "no user event arrived within 15 s"
        assert update.event.type == membership_pb2.EVENT_TYPE_USER
        assert (update.event.user.name, update.event.user.payload) == ("deploy", b"v42")
        # A member joining is a member event: not delivered to this watch.
        agents.start(1)
        assert wait_until(lambda: len(first.members()) == 2, timeout=30)
        client.fire_event("after-join", b"")
        names = []
        deadline = time.monotonic() + 15
        while "after-join" not in names:
            later = reader.next(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(later, EventUpdate)
            assert later.event.type == membership_pb2.EVENT_TYPE_USER, later.event
            names.append(later.event.user.name)
        watch.close()


def test_watch_ring_follows_additions_and_removals(agents: Agents) -> None:
    first = agents.start(0)
    with Client([first.target], with_credentials(OPTIONS)) as client:
        watch = client.watch_ring("cache")
        reader = Reader(watch)
        initial = reader.next(timeout=10)
        assert isinstance(initial, RingUpdate)
        assert list(initial.ring.nodes) == []
        client.add_node("10.9.0.1", 11211, ring="cache")
        client.add_node("10.9.0.2", 11211, ring="cache")
        ids: list[str] = []
        deadline = time.monotonic() + 10
        while len(ids) < 2:
            update = reader.next(timeout=max(0.1, deadline - time.monotonic()))
            assert isinstance(update, RingUpdate)
            ids = sorted(node.id for node in update.ring.nodes)
        assert ids == ["10.9.0.1:11211", "10.9.0.2:11211"]
        client.remove_node("10.9.0.1:11211", ring="cache")
        while ids != ["10.9.0.2:11211"]:
            update = reader.next(timeout=max(0.1, deadline + 10 - time.monotonic()))
            assert isinstance(update, RingUpdate)
            ids = sorted(node.id for node in update.ring.nodes)
        watch.close()


def test_live_ring_over_three_agents_maps_keys_as_the_agents_do(agents: Agents) -> None:
    nodes = agents.start(0), agents.start(1), agents.start(2)
    assert wait_until(lambda: len(nodes[0].members()) == 3, timeout=30)
    with Client([a.target for a in nodes], with_credentials(OPTIONS)) as client:
        for index in range(1, 6):
            client.add_node(f"10.8.0.{index}", 6379, ring="sessions")
        # Registrations replicate to every agent; each answers GetNode alike.
        per_agent = [Client([a.target], with_credentials(OPTIONS)) for a in nodes]
        try:
            assert wait_until(
                lambda: all(len(c.list_nodes(ring="sessions").nodes) == 5 for c in per_agent),
                timeout=30,
            )
            live = client.ring("sessions", timeout=10)
            assert wait_until(lambda: len(live.nodes()) == 5, timeout=10)
            keys = [f"user:{number}" for number in range(50)]
            for agent_client in per_agent:
                for key in keys[:10]:
                    assert live.get_node(key) == agent_client.get_node(key, ring="sessions").id
            owners_before = {key: live.get_node(key) for key in keys}
            removed = "10.8.0.3:6379"
            per_agent[2].remove_node(removed, ring="sessions")
            assert wait_until(lambda: removed not in live.nodes(), timeout=15)
            moved = {key for key in keys if live.get_node(key) != owners_before[key]}
            # Only the keys the removed node owned move.
            assert moved == {key for key in keys if owners_before[key] == removed}
            assert all(live.get_node(key) != removed for key in keys)
            live.close()
        finally:
            for agent_client in per_agent:
                agent_client.close()


def crowd(client: Client, prefix: str) -> None:
    """400 nodes of 0.5 KB on ring "crowd": every snapshot is about 220 KB, so the
    transport's buffers hold only a few of them."""
    pad = {"pad": "x" * 500}
    for index in range(400):
        client.add_node(
            f"{prefix}.{index // 200}.{index % 200 + 1}", 80, ring="crowd", metadata=pad
        )


def churn(client: Client, prefix: str) -> None:
    """1,200 changes to ring "crowd", then a last one that adds `<prefix>.9.10:80`.
    A reader that reads nothing meanwhile falls behind past the transport's buffers,
    the agent queues changes for it up to 1,024 (api/hub.py), then cuts it off with
    RESOURCE_EXHAUSTED."""
    for _ in range(600):
        client.add_node(f"{prefix}.9.9", 80, ring="crowd")
        client.remove_node(f"{prefix}.9.9:80", ring="crowd")
    client.add_node(f"{prefix}.9.10", 80, ring="crowd")


def test_a_watch_cut_off_as_too_slow_subscribes_again_and_catches_up(agents: Agents) -> None:
    first = agents.start(0)
    with Client([first.target], with_credentials(OPTIONS)) as client:
        crowd(client, "10.7")
        watch = client.watch_ring("crowd")
        iterator = iter(watch)
        assert len(next(iterator).ring.nodes) == 400
        # The reader stops reading while the ring changes.
        churn(client, "10.7")
        deadline = time.monotonic() + 30
        ids: set[str] = set()
        while "10.7.9.10:80" not in ids:
            assert time.monotonic() < deadline, "the watch stopped before the last change"
            ids = {node.id for node in next(iterator).ring.nodes}
        assert len(ids) == 401
        assert watch.resubscriptions >= 1
        watch.close()


def test_an_async_live_ring_cut_off_as_too_slow_keeps_updating(agents: Agents) -> None:
    first = agents.start(0)
    with Client([first.target], with_credentials(OPTIONS)) as producer:
        crowd(producer, "10.5")

        async def scenario() -> None:
            async with AsyncClient([first.target], with_credentials(OPTIONS)) as client:
                live = await client.ring("crowd", timeout=10)
                async with live:
                    assert len(live.nodes()) == 400
                    # Blocking calls on the event loop: the LiveRing's task reads
                    # nothing while the ring changes, so the agent cuts it off.
                    churn(producer, "10.5")
                    for _ in range(300):
                        if "10.5.9.10:80" in live.nodes():
                            break
                        await asyncio.sleep(0.1)
                    assert live.error is None, live.error
                    assert "10.5.9.10:80" in live.nodes(), "the LiveRing stopped updating"
                    assert len(live.nodes()) == 401
                    assert live.resubscriptions >= 1
                    # And it goes on following changes after the cut-off.
                    await client.remove_node("10.5.9.10:80", ring="crowd")
                    for _ in range(100):
                        if "10.5.9.10:80" not in live.nodes():
                            break
                        await asyncio.sleep(0.1)
                    assert "10.5.9.10:80" not in live.nodes()

        asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_async_live_ring_follows_a_change(agents: Agents) -> None:
    first = agents.start(0)

    async def scenario() -> None:
        async with AsyncClient([first.target], with_credentials(OPTIONS)) as client:
            live = await client.ring("cache", timeout=10)
            async with live:
                await client.add_node("10.6.0.1", 11211, ring="cache")
                for _ in range(100):
                    if live.nodes():
                        break
                    await asyncio.sleep(0.1)
                assert list(live.nodes()) == ["10.6.0.1:11211"]
                assert live.get_node("k") == "10.6.0.1:11211"

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
