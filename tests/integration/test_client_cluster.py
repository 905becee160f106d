"""The Python client against real agent processes on 127.0.0.x: failover without
failed reads, writes never repeated, heartbeat-driven server lists, and member
watches that resume on another agent without repeating or losing changes."""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.client import AsyncClient, Client, ClientOptions, MemberChangeKind, MembersUpdate
from controlplane.errors import ControlPlaneError, Unavailable
from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    start_agent,
    wait_until,
    with_credentials,
)
from controlplane.v1 import membership_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
FAST = ClientOptions(heartbeat_interval_override=0.5, timeout=5)


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port(HOSTS[0], *HOSTS[1:])
        self.agents: dict[str, AgentProcess] = {}

    def start(self, index: int, join: AgentProcess | None = None) -> AgentProcess:
        args = ["--profile", "local", "--drain-period", "0"]
        if join is not None:
            args += ["--join", join.target]
        agent = start_agent(
            f"n{index}", host=HOSTS[index], port=self.port, args=args, log_dir=self.tmp_path
        )
        self.agents[agent.target] = agent
        return agent

    def alive(self) -> list[AgentProcess]:
        return [a for a in self.agents.values() if a.process.poll() is None]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(tmp_path)
    try:
        yield group
    finally:
        for agent in group.agents.values():
            agent.kill()


def three_agents(cluster: Cluster) -> list[AgentProcess]:
    first = cluster.start(0)
    others = [cluster.start(1, first), cluster.start(2, first)]
    agents = [first, *others]
    assert wait_until(lambda: len(first.members()) == 3, timeout=30)
    return agents


def test_reads_fail_over_and_writes_are_never_repeated(cluster: Cluster) -> None:
    agents = three_agents(cluster)
    with Client([agents[0].target], with_credentials(FAST)) as client:
        assert wait_until(lambda: len(client.servers()) == 3, timeout=30)
        client.members()
        victim = cluster.agents[client.current_server or ""]
        # A second client that knows two servers, the victim at its head, and
        # does not heartbeat: its next call goes to the victim.
        other = next(a for a in agents if a is not victim)
        writer = Client(
            [victim.target, other.target], with_credentials(ClientOptions(heartbeat=False))
        )
        while writer._failover.find_server().address != victim.target:
            writer._failover.failed(writer._failover.find_server())  # type: ignore[arg-type]

        failures: list[BaseException] = []
        answered_by: list[str | None] = []
        stop = threading.Event()

        def read_loop() -> None:
            while not stop.is_set():
                try:
                    client.members()
                    client.local_member()
                    answered_by.append(client.current_server)
                except ControlPlaneError as error:
                    failures.append(error)

        reader = threading.Thread(target=read_loop)
        reader.start()
        try:
            assert wait_until(lambda: len(answered_by) > 20, timeout=10), failures[:3]
            before = len(answered_by)
            victim.kill()
            assert wait_until(lambda: len(answered_by) > before + 20, timeout=10)
        finally:
            stop.set()
            reader.join(10)
        assert failures == []
        assert answered_by[-1] != victim.target

        with pytest.raises(Unavailable, match="MAY OR MAY NOT"):
            writer.add_node("10.9.9.9", 9999)
        # Not repeated on another agent: the registration does not exist...
        ids = lambda: {n.id for n in client.list_nodes().nodes}  # noqa: E731
        assert "10.9.9.9:9999" not in ids()
        # ...and the writer moved on, so calling again registers it exactly once.
        assert writer.add_node("10.9.9.9", 9999).node.id == "10.9.9.9:9999"
        assert writer.current_server == other.target
        assert wait_until(lambda: "10.9.9.9:9999" in ids(), timeout=10)
        writer.close()


def test_heartbeats_bring_the_whole_cluster_and_survive_the_seed(cluster: Cluster) -> None:
    seed = cluster.start(0)
    interval = 1.0
    with Client(
        [seed.target], with_credentials(ClientOptions(heartbeat_interval_override=interval))
    ) as client:
        assert {s.address for s in client.servers()} == {seed.target}
        cluster.start(1, seed)
        cluster.start(2, seed)
        assert wait_until(lambda: len(seed.members()) == 3, timeout=30)
        joined_at = time.monotonic()
        assert wait_until(lambda: len(client.servers()) == 3, timeout=30)
        assert time.monotonic() - joined_at <= 2 * interval + 1.0
        seed.kill()
        names = {m.name for m in client.members()}
        assert names == {"n0", "n1", "n2"}
        assert client.current_server != seed.target


# A stopped (SIGSTOP) agent keeps its connections open and answers nothing: only
# the attempt deadline moves the call on. The margin covers a loaded 2-core machine
# (the next agent, the client and the test all waiting for a core); the call's own
# deadline, which is what a hung agent cost without an attempt deadline, is far
# beyond it.
ATTEMPT = 1.0
MARGIN = 4.0
CALL_DEADLINE = 30.0


def test_a_stopped_agent_costs_about_one_attempt_deadline(cluster: Cluster) -> None:
    agents = three_agents(cluster)
    options = with_credentials(
        ClientOptions(heartbeat=False, timeout=CALL_DEADLINE, attempt_timeout=ATTEMPT)
    )
    seeds = [a.target for a in agents]

    def blocking(victim_of: list[AgentProcess]) -> float:
        with Client(seeds, options) as client:
            client.members()  # the next call goes to the same agent, the pool's head
            victim = cluster.agents[client.current_server or ""]
            victim_of.append(victim)
            victim.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                client.members()
                elapsed = time.monotonic() - started
            finally:
                victim.process.send_signal(signal.SIGCONT)
            assert client.current_server != victim.target
        return elapsed

    async def asynchronous(victim_of: list[AgentProcess]) -> float:
        async with AsyncClient(seeds, options) as client:
            await client.members()
            victim = cluster.agents[client.current_server or ""]
            victim_of.append(victim)
            victim.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                await client.members()
                elapsed = time.monotonic() - started
            finally:
                victim.process.send_signal(signal.SIGCONT)
            assert client.current_server != victim.target
        return elapsed

    victims: list[AgentProcess] = []
    assert blocking(victims) < ATTEMPT + MARGIN
    assert asyncio.run(asynchronous(victims)) < ATTEMPT + MARGIN
    # The stopped agents were resumed and serve again.
    for victim in victims:
        assert wait_until(lambda: len(victim.members()) == 3, timeout=30)  # noqa: B023


def apply(view: dict[str, membership_pb2.Member], update: MembersUpdate) -> None:
    for member in update.members:
        if update.kind is MemberChangeKind.REMOVED:
            view.pop(member.name, None)
        else:
            view[member.name] = member


def state(member: membership_pb2.Member) -> tuple[int, tuple[tuple[str, str], ...]]:
    return member.status, tuple(sorted(member.tags.items()))


def test_member_watch_resumes_without_repeating_or_losing_changes(cluster: Cluster) -> None:
    agents = three_agents(cluster)
    with Client([a.target for a in agents], with_credentials(FAST)) as client:
        assert wait_until(lambda: len(client.servers()) == 3, timeout=30)
        watch = client.watch_members()
        updates: list[MembersUpdate] = []
        lock = threading.Lock()

        def collect() -> None:
            for update in watch:
                with lock:
                    updates.append(update)

        collector = threading.Thread(target=collect)
        collector.start()
        try:
            assert wait_until(lambda: bool(updates) and watch.server is not None, timeout=10)
            victim = cluster.agents[watch.server or ""]
            victim.kill()
            survivor = next(a for a in agents if a is not victim)
            newcomer = cluster.start(3, survivor)
            # A read first, so the pool moves off the dead agent: the write that
            # follows must not be sent to it (it would not be repeated).
            client.members()
            tagged = client.update_tags(set={"color": "blue"})

            def converged() -> bool:
                truth = {m.name: state(m) for m in client.members()}
                view: dict[str, membership_pb2.Member] = {}
                with lock:
                    for update in updates:
                        apply(view, update)
                # The newcomer must be in the truth too: an agent that has not yet
                # heard of it agrees with a watch that has not either.
                return (
                    truth == {name: state(m) for name, m in view.items()}
                    and truth.get(victim.name, (0,))[0] == membership_pb2.MEMBER_STATUS_FAILED
                    and newcomer.name in truth
                )

            assert wait_until(converged, timeout=30)
        finally:
            watch.close()
            collector.join(10)
        assert updates[0].kind is MemberChangeKind.SNAPSHOT
        assert watch.resumptions >= 1
        # Each member's emitted states never repeat back to back: no duplicates.
        history: dict[str, list[tuple[int, tuple[tuple[str, str], ...]]]] = {}
        for update in updates:
            for member in update.members:
                history.setdefault(member.name, []).append(state(member))
        for name, states in history.items():
            assert all(a != b for a, b in itertools.pairwise(states)), (name, states)
        blue = [s for s in history[tagged.name] if ("color", "blue") in s[1]]
        assert len(blue) == 1
        assert newcomer.name in history
