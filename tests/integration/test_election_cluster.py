"""Leader election on a real 3-agent cluster: agreement, rank changes, failover."""

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
LEASE, SKEW, BEAT = 10.0, 1.0, 1.0
# Failure detection with the local profile and 3 members: a probe round, the
# suspicion timeout without confirmations (6 x 3 x 1 s at most) and dissemination.
DETECTION = 22.0
FAILOVER_BOUND = LEASE + SKEW + 2 * BEAT + DETECTION


def leader_of(agent: AgentProcess) -> tuple[str, int] | None:
    try:
        with agent.channel() as channel:
            answer = membership_pb2_grpc.MembershipStub(channel).GetLeader(
                pb.GetLeaderRequest(), timeout=2
            )
    except grpc.RpcError:
        return None
    return (answer.leader.name, answer.leader.epoch) if answer.HasField("leader") else None


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
            args = ["--profile", "local", "--drain-period", "0", "--rank", str(rank)]
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
    # Cold start: members wait a full lease before they claim, then agree.
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
    with agents[0].channel() as channel:
        membership_pb2_grpc.MembershipStub(channel).UpdateTags(
            pb.UpdateTagsRequest(set={"rank": "0"}), timeout=5
        )
    changed_at = time.monotonic()
    time.sleep(2.0)
    assert leader_of(agents[0]) == first  # still the old leadership
    assert wait_until(lambda: (agreed(agents) or ("",))[0] == "e-1", timeout=LEASE + 20)
    moved_after = time.monotonic() - changed_at
    second = agreed(agents)
    assert second is not None
    assert second[1] > first[1]
    assert moved_after > 2.0

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
