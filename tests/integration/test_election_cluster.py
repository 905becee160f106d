"""Leader election on real agents: agreement, rank changes, failover, leadership that
stays put through follower restarts and joins, and what `leader` says meanwhile."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.testing.agents import (
    AgentProcess,
    free_port,
    run_cli,
    start_agent,
    wait_until,
)
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc, server_pool_pb2_grpc
from controlplane.v1 import server_pool_pb2 as pool_pb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
# A shorter lease than the default 10 s: the rules under test do not depend on its
# length, and each phase of these tests waits for a lease to end.
LEASE, SKEW, BEAT = 4.0, 1.0, 1.0
LEASE_ARGS = ["--lease-time", str(LEASE)]
# Failure detection with the local profile and 3 members: a probe round, the
# suspicion timeout without confirmations (6 x 3 x 1 s at most) and dissemination.
DETECTION = 22.0
FAILOVER_BOUND = LEASE + SKEW + 2 * BEAT + DETECTION


def leader_of(agent: AgentProcess) -> tuple[str, int] | None:
    return agent.leader()


def agreed(agents: list[AgentProcess]) -> tuple[str, int] | None:
    views = {leader_of(agent) for agent in agents}
    if len(views) == 1:
        (view,) = views
        return view
    return None


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    port = free_port(HOSTS[0], *HOSTS[1:])
    started: list[AgentProcess] = []
    try:
        for index, (host, rank) in enumerate(zip(HOSTS, (2, 1, 3), strict=True), start=1):
            args = ["--profile", "local", "--drain-period", "0", "--rank", str(rank), *LEASE_ARGS]
            if index > 1:
                args += ["--join", f"{HOSTS[0]}:{port}"]
            started.append(
                start_agent(f"e-{index}", host=host, port=port, args=args, log_dir=tmp_path)
            )
        yield started
    finally:
        for agent in started:
            agent.kill()


def test_lowest_rank_leads_then_rank_changes_and_failover(agents: list[AgentProcess]) -> None:
    # Cold start: e-1 starts alone and leads at once; e-2 (rank 1) takes over when
    # that lease ends, since only a strictly lower rank displaces an incumbent.
    assert wait_until(lambda: (agreed(agents) or ("",))[0] == "e-2", timeout=40), [
        leader_of(a) for a in agents
    ]
    first = agreed(agents)
    assert first is not None

    # The leader's address reaches heartbeat responses, with its epoch.
    with agents[0].channel() as channel:
        beat = server_pool_pb2_grpc.ServerPoolStub(channel).Heartbeat(
            pool_pb.HeartbeatRequest(client_id="t"), timeout=5
        )
    assert (beat.leader_address, beat.leader_epoch) == (agents[1].target, first[1])

    # The CLI shows the same.
    shown = run_cli("leader", "--addr", agents[2].target, "--format", "json", timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["leader"]["name"] == "e-2"

    # A better rank does not preempt the lease: leadership moves only when it ends.
    # The leader's own view of its lease, read just before the change, is how long
    # the old leadership must last at least (less one beat of renewal granularity).
    with agents[1].channel() as channel:
        held = membership_pb2_grpc.MembershipStub(channel).GetLeader(
            pb.GetLeaderRequest(), timeout=5
        )
    assert held.leader.name == "e-2"
    must_last = held.leader.lease_remaining.ToTimedelta().total_seconds() - BEAT
    assert must_last > BEAT, held
    with agents[0].channel() as channel:
        membership_pb2_grpc.MembershipStub(channel).UpdateTags(
            pb.UpdateTagsRequest(set={"rank": "0"}), timeout=5
        )
    changed_at = time.monotonic()
    moved_at: list[float] = []

    def moved() -> bool:
        if (agreed(agents) or ("",))[0] == "e-1":
            moved_at.append(time.monotonic())
            return True
        return False

    assert wait_until(moved, timeout=LEASE + 20, interval=0.05)
    second = agreed(agents)
    assert second is not None
    assert second[1] > first[1]
    moved_after = moved_at[0] - changed_at
    assert moved_after >= must_last, (
        f"leadership moved {moved_after:.1f} s after the rank change, while the lease "
        f"had {must_last + BEAT:.1f} s left: the better rank preempted it"
    )

    # Failover: kill the leader; the others agree on a new one with a higher epoch.
    agents[0].kill()
    survivors = agents[1:]
    killed_at = time.monotonic()
    assert wait_until(lambda: (agreed(survivors) or ("",))[0] == "e-2", timeout=FAILOVER_BOUND), [
        leader_of(a) for a in survivors
    ]
    third = agreed(survivors)
    assert third is not None
    assert third[1] > second[1]
    assert time.monotonic() - killed_at <= FAILOVER_BOUND


def start_server(name: str, host: str, port: int, work: Path, join: list[str]) -> AgentProcess:
    args = ["--drain-period", "0", "--rank", "0", "--data-dir", str(work / name), *LEASE_ARGS]
    for target in join:
        args += ["--join", target]
    return start_agent(name, host=host, port=port, args=args, log_dir=work)


def alive_members(agent: AgentProcess) -> int:
    try:
        return sum(1 for status in agent.members().values() if status == "ALIVE")
    except grpc.RpcError:
        return -1


def test_follower_restarts_and_joins_never_move_leadership(tmp_path: Path) -> None:
    """Equal ranks: 3 follower restarts (SIGTERM, SIGKILL, SIGTERM) and 2 joins of
    servers whose names sort first leave the leader and its epoch alone; the
    leader's own death still fails over (bench/leadership.py runs 20 and 5)."""
    hosts = [f"127.0.0.{i}" for i in range(21, 26)]
    port = free_port(hosts[0], *hosts[1:])
    names = ["srv-1", "srv-2", "srv-3"]
    running: dict[str, AgentProcess] = {}
    seen: set[tuple[str, int]] = set()

    def observe() -> tuple[str, int] | None:
        view = agreed(list(running.values()))
        if view is not None:
            seen.add(view)
        for agent in running.values():
            other = leader_of(agent)
            if other is not None:
                seen.add(other)
        return view

    def settled() -> bool:
        return all(alive_members(a) == len(running) for a in running.values()) and (
            observe() is not None
        )

    try:
        for index, name in enumerate(names):
            join = [f"{hosts[0]}:{port}"] if index else []
            running[name] = start_server(name, hosts[index], port, tmp_path, join)
        assert wait_until(settled, timeout=30)
        first = observe()
        assert first is not None
        followers = [n for n in names if n != first[0]]
        for number, how in enumerate(("SIGTERM", "SIGKILL", "SIGTERM")):
            victim = followers[number % 2]
            if how == "SIGTERM":
                assert running[victim].terminate() == 0
            else:
                running[victim].kill()
            host = hosts[names.index(victim)]
            others = [f"{hosts[names.index(n)]}:{port}" for n in names if n != victim]
            running[victim] = start_server(victim, host, port, tmp_path, others)
            assert wait_until(settled, timeout=30), [leader_of(a) for a in running.values()]
        for number in (1, 2):
            name = f"a-join-{number}"  # sorts before every srv-*
            running[name] = start_server(
                name, hosts[2 + number], port, tmp_path, [f"{hosts[0]}:{port}"]
            )
            assert wait_until(settled, timeout=30)
        # A joiner that took over would do so when the incumbent's lease ends.
        deadline = time.monotonic() + LEASE + SKEW + 2 * BEAT
        while time.monotonic() < deadline:
            observe()
            time.sleep(0.5)
        assert seen == {first}, f"leaderships seen: {sorted(seen)}"

        # The leader's own death still fails over, to a higher epoch.
        running.pop(first[0]).kill()
        killed_at = time.monotonic()
        survivors = list(running.values())
        assert wait_until(
            lambda: (view := agreed(survivors)) is not None and view[0] != first[0],
            timeout=FAILOVER_BOUND,
        ), [leader_of(a) for a in survivors]
        after = agreed(survivors)
        assert after is not None
        assert after[1] > first[1]
        assert time.monotonic() - killed_at <= FAILOVER_BOUND
    finally:
        for agent in running.values():
            agent.kill()


def test_leader_command_explains_an_election_in_progress(tmp_path: Path) -> None:
    """An agent whose join has not reached anybody yet does not claim: it says so."""
    host = "127.0.0.31"
    port = free_port(host)
    unreachable = f"127.0.0.32:{free_port('127.0.0.32')}"
    agent = start_agent(
        "lonely",
        host=host,
        port=port,
        args=["--drain-period", "0", "--join", unreachable, *LEASE_ARGS],
        log_dir=tmp_path,
    )
    try:
        shown = run_cli("leader", "--addr", agent.target, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("No leader: electing; a leader is expected within ")
        assert "joining the cluster" in shown.stdout
        as_json = run_cli("leader", "--addr", agent.target, "--format", "json", timeout=30)
        document = json.loads(as_json.stdout)
        assert document["leader"] is None
        assert document["election"]["state"] == "joining"
        assert 0 < document["election"]["expected_within_seconds"] <= LEASE + SKEW + 2 * BEAT
        assert "electing; a leader is expected within" in agent.log()
        # The join never succeeds: after one follower lease it leads alone.
        assert wait_until(lambda: leader_of(agent) == ("lonely", 1), timeout=LEASE + SKEW + 5)
    finally:
        agent.kill()
