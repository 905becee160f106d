"""hnatsd's election timings as agent settings, on real agents: a shorter lease_time is
the lease leaders hold, and servers whose lease_time differs elect nobody and say why;
what GetLeader and the leader history show through a failover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.testing.agents import AgentProcess, free_port, run_cli, start_agent, wait_until
from controlplane.v1 import membership_pb2 as pb
from controlplane.v1 import membership_pb2_grpc

pytestmark = [pytest.mark.integration]

HOSTS = ("127.0.0.81", "127.0.0.82")
SHORT = ["--lease-time", "4", "--beat-interval", "0.5", "--max-clock-skew", "0.5"]


def lease_remaining(agent: AgentProcess) -> float | None:
    with agent.channel() as channel:
        answer = membership_pb2_grpc.MembershipStub(channel).GetLeader(
            pb.GetLeaderRequest(), timeout=2.0
        )
    return (
        answer.leader.lease_remaining.ToTimedelta().total_seconds()
        if answer.HasField("leader")
        else None
    )


def start_pair(tmp_path: Path, first: list[str], second: list[str]) -> list[AgentProcess]:
    port = free_port(*HOSTS)
    base = ["--profile", "local", "--drain-period", "0"]
    a = start_agent(
        "el-a", host=HOSTS[0], port=port, args=[*base, "--rank", "1", *first], log_dir=tmp_path
    )
    b = start_agent(
        "el-b",
        host=HOSTS[1],
        port=port,
        args=[*base, "--rank", "2", "--join", a.target, *second],
        log_dir=tmp_path,
    )
    return [a, b]


def test_the_leader_holds_the_configured_lease(tmp_path: Path) -> None:
    agents = start_pair(tmp_path, SHORT, SHORT)
    try:
        assert wait_until(lambda: all(a.leader() == ("el-a", 1) for a in agents), timeout=20)
        # Renewed every half second, a 4 s lease never shows more than 4 s left
        # (the default would show up to 10 s).
        samples = [lease_remaining(agents[0]) for _ in range(5)]
        assert all(s is not None and 0.0 < s <= 4.0 for s in samples), samples
    finally:
        for agent in agents:
            agent.kill()


def test_servers_with_different_lease_times_elect_nobody_and_say_why(tmp_path: Path) -> None:
    agents = start_pair(tmp_path, ["--lease-time", "6", "--beat-interval", "0.5"], SHORT)
    a, b = agents
    try:
        line = "refusing to grant el-a: its lease_time (6 s) differs from this agent's (4 s)"
        assert wait_until(lambda: line in b.log(), timeout=20), b.log()[-2000:]
        # a led alone before b joined; once b asked who leads, a cannot renew
        # without b's grant, and no claim gathers it.
        assert wait_until(lambda: a.leader() is None and b.leader() is None, timeout=15)
        assert b.log().count("refusing to grant el-a") == 1
    finally:
        for agent in agents:
            agent.kill()


def test_leader_history_and_ranked_members_survive_a_failover(tmp_path: Path) -> None:
    agents = start_pair(tmp_path, SHORT, SHORT)
    a, b = agents
    try:
        assert wait_until(lambda: all(x.leader() == ("el-a", 1) for x in agents), timeout=20)
        with b.channel() as channel:
            answer = membership_pb2_grpc.MembershipStub(channel).GetLeader(
                pb.GetLeaderRequest(), timeout=2.0
            )
        # hnatsd's AgentLoc: every eligible member in sight, by rank, the leader's lease.
        assert [(m.name, m.rank, m.leading) for m in answer.ranked] == [
            ("el-a", 1, True),
            ("el-b", 2, False),
        ]
        assert 0 < answer.ranked[0].lease_remaining.ToTimedelta().total_seconds() <= 4.0
        assert not answer.ranked[1].HasField("lease_remaining")

        a.kill()
        assert wait_until(lambda: b.leader() == ("el-b", 2), timeout=30), b.log()[-2000:]
        result = run_cli("leader", "--history", "--format", "json", "--addr", b.target)
        assert result.returncode == 0, result.stderr
        changes = json.loads(result.stdout)["changes"]
        assert [(c["leader"], c["epoch"], c["cause"]) for c in changes] == [
            ("el-a", 1, "learned"),
            (None, 0, "ended"),
            ("el-b", 2, "elected"),
        ]
        assert changes[0]["time"] < changes[1]["time"] < changes[2]["time"]
        assert changes[0]["reason"] == "el-a leads with epoch 1"
        text = run_cli("leader", "--history", "--addr", b.target).stdout
        assert text.splitlines()[0].split() == ["Time", "Leader", "Epoch", "Cause", "Reason"]
        assert "elected" in text.splitlines()[-1]
    finally:
        for agent in agents:
            agent.kill()
