"""A real agent process, inspected with the real grpcurl binary and the stubs."""

from __future__ import annotations

import json
import subprocess

import grpc
import pytest

from controlplane.client.health import HealthStatus
from controlplane.testing.agents import AgentProcess

pytestmark = pytest.mark.integration

PUBLIC = [
    "controlplane.v1.Keyring",
    "controlplane.v1.Membership",
    "controlplane.v1.Ring",
    "controlplane.v1.ServerPool",
]


def run_grpcurl(grpcurl: str, *args: str) -> str:
    result = subprocess.run(
        [grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_every_service(agent: AgentProcess, grpcurl: str) -> None:
    listed = run_grpcurl(grpcurl, agent.target, "list").split()
    assert listed == sorted(
        [*PUBLIC, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )


def test_grpcurl_describes_membership(agent: AgentProcess, grpcurl: str) -> None:
    described = run_grpcurl(grpcurl, agent.target, "describe", "controlplane.v1.Membership")
    assert "controlplane.v1.Membership is a service:" in described
    for rpc in (
        "rpc Join ( .controlplane.v1.JoinRequest ) returns ( .controlplane.v1.JoinResponse )",
        "rpc WatchMembers ( .controlplane.v1.WatchMembersRequest ) returns ( stream",
        "rpc GetLeader ( .controlplane.v1.GetLeaderRequest )",
    ):
        assert rpc in described


def test_grpcurl_describes_a_message_with_comments(agent: AgentProcess, grpcurl: str) -> None:
    described = run_grpcurl(grpcurl, agent.target, "describe", "controlplane.v1.GetNodesRequest")
    assert "int32 count = 3;" in described


@pytest.mark.parametrize("service", ["", *PUBLIC])
def test_grpcurl_health_check_per_service(agent: AgentProcess, grpcurl: str, service: str) -> None:
    body = json.dumps({"service": service})
    answer = run_grpcurl(grpcurl, "-d", body, agent.target, "grpc.health.v1.Health/Check")
    assert json.loads(answer) == {"status": "SERVING"}


def test_health_of_unknown_service_is_not_found(agent: AgentProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        agent.health("controlplane.v1.Nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_sigterm_stops_gracefully_with_exit_zero(agent: AgentProcess) -> None:
    assert agent.health() == HealthStatus.SERVING
    assert agent.terminate() == 0
    assert "stopped" in agent.log()
